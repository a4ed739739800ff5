/**
 * *Run as job…*: a notebook (from the file browser's context menu, or the one
 * open in the main area) executed as a batch job with a GPU share. A small
 * dialog asks for the GPUs (default: this session's own share) and the longest
 * run time; the job goes through the server extension (POST gpuhub/jobs) and
 * shows in the panel's "Jobs".
 *
 * The file browser and the notebooks are reached duck-typed through the
 * shell's widgets (their packages are not this extension's dependencies).
 */
import { JupyterFrontEnd } from '@jupyterlab/application';
import { Dialog, showDialog } from '@jupyterlab/apputils';
import { Widget } from '@lumino/widgets';
import { requestAPI } from './api';
import { GpuhubModel } from './model';
import { baseName, notebookJob, sessionGpus } from './sections/jobs';
import { el } from './views/dom';

/** The longest run time the dialog offers by default (hours). */
export const DEFAULT_JOB_HOURS = 1;

interface IDocContext {
  path: string;
  model?: { dirty?: boolean };
  save?: () => Promise<void>;
}

function contextOf(widget: Widget | null | undefined): IDocContext | null {
  const ctx = (widget as unknown as { context?: IDocContext } | null)?.context;
  return ctx && typeof ctx.path === 'string' ? ctx : null;
}

/** The notebook selected in the default file browser (what its context menu was opened on). */
export function selectedNotebook(app: JupyterFrontEnd): string | null {
  const shell = app.shell as unknown as { widgets?: (area: string) => Iterable<Widget> };
  for (const w of shell.widgets ? shell.widgets('left') : []) {
    const fb = w as unknown as { selectedItems?: () => Iterable<{ path: string; type: string }> };
    if (w.id === 'filebrowser' && typeof fb.selectedItems === 'function') {
      for (const item of fb.selectedItems()) {
        if (item.type === 'notebook' || item.path.endsWith('.ipynb')) {
          return item.path;
        }
      }
    }
  }
  return null;
}

/** The notebook open in the main area, if the current widget is one. */
export function currentNotebook(app: JupyterFrontEnd): string | null {
  const ctx = contextOf(app.shell.currentWidget);
  return ctx && ctx.path.endsWith('.ipynb') ? ctx.path : null;
}

/** Save the open editor of `path` when it has unsaved changes: the job runs the file. */
async function saveIfOpen(app: JupyterFrontEnd, path: string): Promise<void> {
  const shell = app.shell as unknown as { widgets?: (area: string) => Iterable<Widget> };
  for (const w of shell.widgets ? shell.widgets('main') : []) {
    const ctx = contextOf(w);
    if (ctx && ctx.path === path && ctx.model?.dirty && ctx.save) {
      await ctx.save();
    }
  }
}

/** The dialog's body: the notebook, the GPUs and the run time. */
export class JobForm extends Widget {
  constructor(path: string, gpus: string, hours: number) {
    super({ node: el('form', { class: 'gpuhub-jobform' }) });
    this.gpus = el('input', {
      class: 'jp-mod-styled',
      type: 'number',
      min: '0',
      step: 'any',
      value: gpus,
      name: 'gpus',
      'data-testid': 'job-gpus'
    }) as HTMLInputElement;
    this.hours = el('input', {
      class: 'jp-mod-styled',
      type: 'number',
      min: '0',
      step: 'any',
      value: String(hours),
      name: 'max_hours',
      'data-testid': 'job-hours'
    }) as HTMLInputElement;
    this.node.append(
      el('p', { class: 'gpuhub-jobform-what' }, 'Runs ', el('code', { title: `~/${path}` }, baseName(path)),
        ' from top to bottom as a batch job: it waits in the queue for its share, and the executed copy lands next to its log in ',
        el('code', {}, '~/jobs/ID/'), '.'),
      el('label', {}, el('span', {}, 'GPUs'), this.gpus),
      el('label', {}, el('span', {}, 'Max hours'), this.hours),
      el('p', { class: 'gpuhub-muted' }, 'The saved file runs; unsaved changes of an open notebook are saved first.')
    );
    // Enter in a field: the dialog's default button (Submit), not a form submit
    this.node.addEventListener('submit', e => e.preventDefault());
  }

  getValue(): { gpus: string; hours: number | null } {
    const h = parseFloat(this.hours.value);
    return { gpus: this.gpus.value, hours: isFinite(h) && h > 0 ? h : null };
  }

  readonly gpus: HTMLInputElement;
  readonly hours: HTMLInputElement;
}

/** The dialog for `path`; true: submitted (the job shows in the panel's Jobs, a refusal in its banner), false: not (cancelled). */
export async function runAsJob(app: JupyterFrontEnd, model: GpuhubModel, path: string): Promise<boolean> {
  const form = new JobForm(path, sessionGpus(model.status?.share), DEFAULT_JOB_HOURS);
  const result = await showDialog({
    title: 'Run as job',
    body: form,
    buttons: [Dialog.cancelButton(), Dialog.okButton({ label: 'Submit' })],
    focusNodeSelector: 'input[name=gpus]'
  });
  if (!result.button.accept || !result.value) {
    return false;
  }
  const { gpus, hours } = result.value;
  await model.act('run as job', async () => {
    await saveIfOpen(app, path);
    await requestAPI('jobs', { method: 'POST', body: JSON.stringify(notebookJob(path, gpus, hours)) });
  });
  return true;
}
