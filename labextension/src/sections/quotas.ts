/** What the "Quotas" section shows (pure; the view renders it). */
import { IQuotaItem, quotaText } from '../format';
import { IList } from '../status';
import { ListContent, listContent } from './list';

export interface IQuotaRow {
  key: string;
  name: string;
  text: string;
  fraction: number | null;
}

export function quotasContent(data: IList<IQuotaItem>): ListContent<IQuotaRow> {
  return listContent(data, 'no quota set', q => ({
    key: q.key,
    name: q.name,
    text: quotaText(q),
    fraction: q.fraction ?? null
  }));
}
