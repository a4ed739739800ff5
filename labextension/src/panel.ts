/**
 * The gpuhub sidebar panel: a title, a banner and one view per section (my
 * share, live use, quotas, queue, jobs, vfolders, storage), all reading one
 * GpuhubModel. Which sections show comes from the settings; while the panel is
 * hidden the model does not poll.
 */
import { Panel, Widget } from '@lumino/widgets';
import { GpuhubModel } from './model';
import { IPanelSettings } from './settings';
import { BannerView } from './views/banner';
import { el } from './views/dom';
import { IJobActions, JobsView } from './views/jobs';
import { LiveView } from './views/live';
import { QueueView } from './views/queue';
import { QuotasView } from './views/quotas';
import { SectionView } from './views/section';
import { ShareView } from './views/share';
import { StorageView } from './views/storage';
import { VfoldersView } from './views/vfolders';

export class GpuhubPanel extends Panel {
  constructor(model: GpuhubModel, jobActions: IJobActions | null = null) {
    super();
    this.id = 'gpuhub-panel';
    this.addClass('gpuhub-panel');
    this.title.caption = 'gpuhub: my GPU share';
    this.node.tabIndex = 0;
    this.model = model;
    this.share = new ShareView(model);
    this._sections = [
      this.share,
      new LiveView(model),
      new QuotasView(model),
      new QueueView(model),
      new JobsView(model, jobActions),
      new VfoldersView(model),
      new StorageView(model)
    ];
    this.addWidget(new Widget({ node: el('h2', { class: 'gpuhub-title' }, 'gpuhub') }));
    this.addWidget(new BannerView(model));
    this._sections.forEach(v => this.addWidget(v));
  }

  readonly model: GpuhubModel;
  readonly share: ShareView;

  /** Show the sections the settings ask for, and poll at their interval. */
  applySettings(settings: IPanelSettings): void {
    for (const view of this._sections) {
      view.setHidden(!settings.sections[view.key]);
    }
    this.model.interval = settings.intervalMs;
  }

  protected onAfterShow(): void {
    this.model.active = true;
  }

  protected onAfterHide(): void {
    this.model.active = false;
  }

  private _sections: SectionView[];
}
