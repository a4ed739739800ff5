/** What the "Queue" section shows (pure; the view renders it). */
import { IQueueItem, queueText } from '../format';
import { IList } from '../status';
import { ListContent, listContent } from './list';

export interface IQueueRow {
  id: string;
  text: string;
  reason: string;
}

export function queueContent(
  data: IList<IQueueItem>,
  now: number,
  clock?: (t: number) => string
): ListContent<IQueueRow> {
  return listContent(data, 'no other requests waiting', q => ({
    id: q.id,
    text: queueText(q, now, clock),
    reason: q.reason || ''
  }));
}
