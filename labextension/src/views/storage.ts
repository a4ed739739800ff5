/** "Storage": each storage host's used / free space and its read and write throughput. */
import { GpuhubModel } from '../model';
import { storageContent } from '../sections/storage';
import { IStatus } from '../status';
import { bar, el, errorLine, muted, row, sparkline } from './dom';
import { SectionView } from './section';

export class StorageView extends SectionView {
  constructor(model: GpuhubModel) {
    super(model, 'storage', 'Storage');
  }

  protected render(s: IStatus): void {
    const c = storageContent(s.storage);
    if (c.kind === 'error') {
      this.body.replaceChildren(errorLine(c.message));
      return;
    }
    if (c.kind === 'empty') {
      this.body.replaceChildren(muted(c.text));
      return;
    }
    this.body.replaceChildren(
      ...c.hosts.map(h =>
        el(
          'div',
          { class: 'gpuhub-host', 'data-host': h.name },
          el('strong', {}, h.name),
          h.error ? errorLine(h.error) : '',
          row('Used / free', h.usedFree),
          bar(h.fraction),
          row('Read', el('span', { 'data-testid': 'storage-read' }, h.read)),
          sparkline(h.readHistory, undefined, 'gpuhub-spark-read', 'read throughput'),
          row('Write', el('span', { 'data-testid': 'storage-write' }, h.write)),
          sparkline(h.writeHistory, undefined, 'gpuhub-spark-write', 'write throughput'),
          row('Written in total', el('span', { 'data-testid': 'storage-written', 'data-bytes': String(h.writtenBytes ?? '') }, h.written))
        )
      )
    );
  }
}
