/** A section that is a list (quotas, queue): its error, its text when empty, or its rows (pure). */
import { IList } from '../status';

export type ListContent<T> =
  | { kind: 'error'; message: string }
  | { kind: 'empty'; text: string }
  | { kind: 'items'; items: T[] };

/** A list section: its error, the text when it is empty, or its rows. */
export function listContent<S, T>(data: IList<S>, empty: string, row: (item: S) => T): ListContent<T> {
  if (data.error) {
    return { kind: 'error', message: data.error };
  }
  if (!data.items || data.items.length === 0) {
    return { kind: 'empty', text: empty };
  }
  return { kind: 'items', items: data.items.map(row) };
}

