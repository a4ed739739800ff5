/**
 * "Jobs": the user's newest batch jobs (state, exit code, the executed notebook
 * to open, Cancel while queued or running) and *Run as job* for the current
 * notebook.
 */
import { requestAPI } from '../api';
import { GpuhubModel } from '../model';
import { jobsContent } from '../sections/jobs';
import { IStatus } from '../status';
import { el } from './dom';
import { renderList } from './list';
import { SectionView } from './section';

/** What the section's buttons do outside the panel (the lab's commands). */
export interface IJobActions {
  /** open a file (under the server's root) in the lab */
  open(path: string): void;
  /** the *Run as job* dialog for the current notebook */
  runCurrent(): void;
}

export class JobsView extends SectionView {
  constructor(model: GpuhubModel, actions: IJobActions | null) {
    super(model, 'jobs', 'Jobs');
    this._actions = actions;
    if (actions) {
      this.node.append(
        el(
          'div',
          { class: 'gpuhub-actions gpuhub-jobs-actions' },
          el(
            'button',
            {
              class: 'jp-mod-styled gpuhub-btn',
              'data-testid': 'run-current',
              title:
                'run the notebook open in the main area as a batch job (or right-click any notebook in the file browser: Run as job…)',
              onclick: () => actions.runCurrent()
            },
            'Run notebook as job…'
          )
        )
      );
    }
  }

  cancel(id: string): Promise<void> {
    return this.model.act('cancel job', () => requestAPI(`jobs/${encodeURIComponent(id)}`, { method: 'DELETE' }));
  }

  protected render(s: IStatus): void {
    renderList(this.body, jobsContent(s.jobs, s.now), j =>
      el(
        'div',
        { class: 'gpuhub-job', 'data-job': j.id, 'data-state': j.state },
        el(
          'div',
          { class: 'gpuhub-job-head' },
          el('span', { class: 'gpuhub-job-name', title: j.title }, j.name),
          el('span', { class: `gpuhub-tag gpuhub-job-state gpuhub-job-${j.state}`, 'data-testid': 'job-state' }, j.state)
        ),
        el(
          'div',
          { class: 'gpuhub-muted gpuhub-job-detail' },
          // each fact whole on its line (a narrow panel wraps between them)
          ...[el('code', { title: `job ${j.id}: its output is in ~/jobs/${j.id}/` }, j.id)]
            .concat(j.detail ? j.detail.split(' · ').map(part => el('span', {}, part)) : [])
            .flatMap((node, i) => (i ? [' · ', node] : [node]))
        ),
        j.reason ? el('div', { class: 'gpuhub-muted gpuhub-job-reason' }, j.reason) : '',
        j.output || j.cancellable
          ? el(
              'div',
              { class: 'gpuhub-job-buttons' },
              j.output && this._actions
                ? el(
                    'button',
                    {
                      class: 'jp-mod-styled gpuhub-btn',
                      'data-testid': 'job-open',
                      title: `open the executed notebook ${j.output}`,
                      onclick: () => this._actions?.open(j.output as string)
                    },
                    'Open result'
                  )
                : '',
              j.cancellable
                ? el(
                    'button',
                    {
                      class: 'jp-mod-styled gpuhub-btn',
                      'data-testid': 'job-cancel',
                      onclick: () => void this.cancel(j.id)
                    },
                    'Cancel'
                  )
                : ''
            )
          : ''
      )
    );
  }

  private _actions: IJobActions | null;
}
