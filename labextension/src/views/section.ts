/**
 * The base of the panel's section views: a titled <section> that renders the
 * model's state into its body whenever the model changes.
 */
import { Widget } from '@lumino/widgets';
import { GpuhubModel } from '../model';
import { SectionKey } from '../settings';
import { IStatus } from '../status';
import { el } from './dom';

export abstract class SectionView extends Widget {
  constructor(model: GpuhubModel, key: SectionKey, title: string) {
    super({ node: el('section', { 'data-section': key }) });
    this.addClass('gpuhub-section');
    this.addClass(`gpuhub-${key}`);
    this.key = key;
    this.model = model;
    this.body = el('div', { class: 'gpuhub-section-body' });
    this.node.append(el('h3', {}, title), this.body);
    model.stateChanged.connect(this._changed, this);
  }

  readonly key: SectionKey;

  dispose(): void {
    this.model.stateChanged.disconnect(this._changed, this);
    super.dispose();
  }

  /** Fill `body` from a status (called after every poll that answered). */
  protected abstract render(status: IStatus): void;

  private _changed(): void {
    const s = this.model.status;
    if (s && s !== this._rendered) {
      this._rendered = s;
      this.render(s);
    }
  }

  protected readonly model: GpuhubModel;
  protected readonly body: HTMLElement;
  private _rendered: IStatus | null = null;
}
