/**
 * gpuhub-labextension: a left-sidebar panel with this session's GPU share, its
 * live use, time left, quotas, queue, batch jobs, vfolders and storage. A model
 * (model.ts) polls the server extension; one view per section
 * (views/, their content in sections/) renders it; the settings
 * (schema/plugin.json) say how often and which sections. *Run as job…*
 * (runjob.ts) on a notebook in the file browser's context menu, the panel and
 * the palette.
 */
import { ILabShell, JupyterFrontEnd, JupyterFrontEndPlugin } from '@jupyterlab/application';
import { ICommandPalette } from '@jupyterlab/apputils';
import { ISettingRegistry } from '@jupyterlab/settingregistry';
import { LabIcon } from '@jupyterlab/ui-components';
import { requestAPI, sessionMetrics } from './api';
import { GpuhubModel } from './model';
import { TimeLeftNotices } from './notices';
import { currentNotebook, runAsJob, selectedNotebook } from './runjob';
import { GpuhubPanel } from './panel';
import { panelSettings } from './settings';
import { IStatus } from './status';
import iconSvg from '../style/icon.svg';

export const gpuhubIcon = new LabIcon({ name: 'gpuhub:icon', svgstr: iconSvg });

const PLUGIN_ID = 'gpuhub-labextension:plugin';

const plugin: JupyterFrontEndPlugin<void> = {
  id: PLUGIN_ID,
  description: "gpuhub's sidebar: my GPU share, live use, time left, quotas, queue, vfolders, storage",
  autoStart: true,
  requires: [ILabShell],
  optional: [ICommandPalette, ISettingRegistry],
  activate: (
    app: JupyterFrontEnd,
    shell: ILabShell,
    palette: ICommandPalette | null,
    settingRegistry: ISettingRegistry | null
  ) => {
    const model = new GpuhubModel({
      fetch: () => Promise.all([requestAPI<IStatus>('status'), sessionMetrics()])
    });
    const runJob = 'gpuhub:run-as-job';
    const panel = new GpuhubPanel(model, {
      open: path => void app.commands.execute('docmanager:open', { path }),
      runCurrent: () => void app.commands.execute(runJob, { from: 'current' })
    });
    panel.title.icon = gpuhubIcon;
    shell.add(panel, 'left', { rank: 150 });
    new TimeLeftNotices(model, () => panel.share.extend());
    void model.prime();
    if (settingRegistry) {
      settingRegistry
        .load(PLUGIN_ID)
        .then(settings => {
          const apply = () => panel.applySettings(panelSettings(settings.composite as Record<string, unknown>));
          apply();
          settings.changed.connect(apply);
        })
        .catch(reason => console.warn('gpuhub: the panel settings could not be loaded; defaults apply', reason));
    }
    const command = 'gpuhub:open-panel';
    app.commands.addCommand(command, {
      label: 'gpuhub: show my GPU share',
      execute: () => shell.activateById(panel.id)
    });
    palette?.addItem({ command, category: 'gpuhub' });

    // Run as job…: args.path; else (from: 'filebrowser') the file browser's selection,
    // (from: 'current') the notebook in the main area; from the palette that one, else the selection.
    // Submitted (or refused): the panel shows the job (or why not)
    app.commands.addCommand(runJob, {
      label: 'Run as job…',
      caption: 'gpuhub: run this notebook as a batch job with a GPU share',
      icon: args => (args.from === 'filebrowser' ? gpuhubIcon : undefined),
      execute: async args => {
        const from = args.from as string | undefined;
        const path =
          (args.path as string | undefined) ??
          (from === 'filebrowser'
            ? selectedNotebook(app)
            : from === 'current'
              ? currentNotebook(app)
              : currentNotebook(app) ?? selectedNotebook(app));
        if (!path) {
          model.fail('run as job: open a notebook, or right-click one in the file browser');
          shell.activateById(panel.id);
          return;
        }
        if (await runAsJob(app, model, path)) {
          shell.activateById(panel.id);
        }
      }
    });
    app.contextMenu.addItem({
      command: runJob,
      args: { from: 'filebrowser' },
      selector: '.jp-DirListing-item[data-file-type="notebook"]',
      rank: 4
    });
    palette?.addItem({ command: runJob, category: 'gpuhub' });
  }
};

export default plugin;
