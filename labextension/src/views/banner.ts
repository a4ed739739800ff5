/** The panel's banner: why the last poll or action failed. */
import { Widget } from '@lumino/widgets';
import { GpuhubModel } from '../model';
import { bannerLines } from '../sections/banner';
import { errorLine } from './dom';

export class BannerView extends Widget {
  constructor(model: GpuhubModel) {
    super();
    this.addClass('gpuhub-banner');
    this._model = model;
    model.stateChanged.connect(this._changed, this);
  }

  dispose(): void {
    this._model.stateChanged.disconnect(this._changed, this);
    super.dispose();
  }

  private _changed(): void {
    this.node.replaceChildren(...bannerLines(this._model.error, this._model.actionError).map(errorLine));
  }

  private _model: GpuhubModel;
}
