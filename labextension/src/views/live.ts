/** "Live use of this share": GPU utilisation and memory with sparklines, and the session's CPU and memory. */
import { liveContent } from '../sections/live';
import { IStatus } from '../status';
import { GpuhubModel } from '../model';
import { bar, Child, el, errorLine, muted, row, sparkline } from './dom';
import { SectionView } from './section';

export class LiveView extends SectionView {
  constructor(model: GpuhubModel) {
    super(model, 'live', 'Live use of this share');
  }

  protected render(s: IStatus): void {
    const c = liveContent(s.live, s.share.allocation ?? null, this.model.metrics);
    const parts: Child[] = [];
    if (c.error) {
      parts.push(errorLine(c.error));
    }
    if (c.gpu) {
      const g = c.gpu;
      parts.push(
        el('div', { class: `gpuhub-source gpuhub-source-${g.source}`, 'data-testid': 'live-source' }, g.label),
        row('GPU utilisation', el('span', { 'data-testid': 'gpu-util' }, g.utilization)),
        bar(g.utilizationFraction),
        sparkline(g.utilizationHistory, 100, 'gpuhub-spark-util', 'GPU utilisation, last 10 minutes'),
        row('GPU memory', g.memory),
        bar(g.memoryFraction),
        sparkline(g.memoryHistory, g.memoryMax, 'gpuhub-spark-mem', 'GPU memory, last 10 minutes')
      );
    }
    if (c.message) {
      parts.push(muted(c.message));
    }
    if (c.session) {
      parts.push(
        el('div', { class: 'gpuhub-sub' }, 'This session (jupyter-resource-usage)'),
        row('CPU', c.session.cpu),
        row('Memory', c.session.memory),
        bar(c.session.memoryFraction)
      );
    }
    this.body.replaceChildren(...parts.filter((p): p is Node => p instanceof Node));
  }
}
