/** "Quotas": used / limit of GPUs at once, sessions and GPU-hours, with bars. */
import { GpuhubModel } from '../model';
import { quotasContent } from '../sections/quotas';
import { IStatus } from '../status';
import { bar, el, row } from './dom';
import { renderList } from './list';
import { SectionView } from './section';

export class QuotasView extends SectionView {
  constructor(model: GpuhubModel) {
    super(model, 'quotas', 'Quotas');
  }

  protected render(s: IStatus): void {
    renderList(this.body, quotasContent(s.quotas), q =>
      el(
        'div',
        { class: 'gpuhub-quota', 'data-key': q.key },
        row(q.name, el('span', { 'data-testid': `quota-${q.key}` }, q.text)),
        bar(q.fraction)
      )
    );
  }
}
