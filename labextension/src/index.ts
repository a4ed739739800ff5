/**
 * gpuhub-labextension: a left-sidebar panel with this session's GPU share, its
 * live use, time left, quotas, queue, vfolders and storage (see panel.ts).
 */
import { ILabShell, JupyterFrontEnd, JupyterFrontEndPlugin } from '@jupyterlab/application';
import { ICommandPalette } from '@jupyterlab/apputils';
import { LabIcon } from '@jupyterlab/ui-components';
import { GpuhubPanel } from './panel';
import iconSvg from '../style/icon.svg';

export const gpuhubIcon = new LabIcon({ name: 'gpuhub:icon', svgstr: iconSvg });

const plugin: JupyterFrontEndPlugin<void> = {
  id: 'gpuhub-labextension:plugin',
  description: "gpuhub's sidebar: my GPU share, live use, time left, quotas, queue, vfolders, storage",
  autoStart: true,
  requires: [ILabShell],
  optional: [ICommandPalette],
  activate: (app: JupyterFrontEnd, shell: ILabShell, palette: ICommandPalette | null) => {
    const panel = new GpuhubPanel();
    panel.title.icon = gpuhubIcon;
    shell.add(panel, 'left', { rank: 150 });
    void panel.prime();
    const command = 'gpuhub:open-panel';
    app.commands.addCommand(command, {
      label: 'gpuhub: show my GPU share',
      execute: () => shell.activateById(panel.id)
    });
    palette?.addItem({ command, category: 'gpuhub' });
  }
};

export default plugin;
