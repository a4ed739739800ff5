/** "Queue": the user's other requests waiting, with position and start estimate. */
import { GpuhubModel } from '../model';
import { queueContent } from '../sections/queue';
import { IStatus } from '../status';
import { el } from './dom';
import { renderList } from './list';
import { SectionView } from './section';

export class QueueView extends SectionView {
  constructor(model: GpuhubModel) {
    super(model, 'queue', 'Queue');
  }

  protected render(s: IStatus): void {
    renderList(this.body, queueContent(s.queue, s.now), q =>
      el(
        'div',
        { class: 'gpuhub-queued', 'data-request': q.id, title: q.reason },
        el('div', { 'data-testid': 'queued' }, q.text),
        q.reason ? el('div', { class: 'gpuhub-muted gpuhub-queued-reason' }, q.reason) : ''
      )
    );
  }
}
