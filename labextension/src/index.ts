/**
 * gpuhub-labextension: a left-sidebar panel with this session's GPU share, its
 * live use, time left, quotas, queue, vfolders and storage. A model
 * (model.ts) polls the server extension; one view per section
 * (views/, their content in sections/) renders it; the settings
 * (schema/plugin.json) say how often and which sections.
 */
import { ILabShell, JupyterFrontEnd, JupyterFrontEndPlugin } from '@jupyterlab/application';
import { ICommandPalette } from '@jupyterlab/apputils';
import { ISettingRegistry } from '@jupyterlab/settingregistry';
import { LabIcon } from '@jupyterlab/ui-components';
import { requestAPI, sessionMetrics } from './api';
import { GpuhubModel } from './model';
import { TimeLeftNotices } from './notices';
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
    const panel = new GpuhubPanel(model);
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
  }
};

export default plugin;
