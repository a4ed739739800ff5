/** Rendering of a list section's content (quotas, queue). */
import { ListContent } from '../sections/list';
import { errorLine, muted } from './dom';

export function renderList<T>(body: HTMLElement, c: ListContent<T>, item: (row: T) => HTMLElement): void {
  if (c.kind === 'error') {
    body.replaceChildren(errorLine(c.message));
  } else if (c.kind === 'empty') {
    body.replaceChildren(muted(c.text));
  } else {
    body.replaceChildren(...c.items.map(item));
  }
}
