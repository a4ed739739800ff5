/**
 * "vfolders": the user's vfolders (mounted here or not, usage against quota),
 * invitations to accept or reject, forms to create and share one, and
 * resumable uploads into one (uploads.ts).
 */
import { requestAPI } from '../api';
import { GpuhubModel } from '../model';
import { shareable, shownUploads, uploadable, uploadLine, vfoldersContent } from '../sections/vfolders';
import { IStatus, IVfolder } from '../status';
import { forgetRecord, loadRecords, startUpload, uploadKey } from '../uploads';
import { bar, el, errorLine, muted, row } from './dom';
import { SectionView } from './section';

export class VfoldersView extends SectionView {
  constructor(model: GpuhubModel) {
    super(model, 'vfolders', 'vfolders');
    this._forms = el('div', { class: 'gpuhub-vf-forms' });
    this._uploads = el('div', { class: 'gpuhub-uploads' });
    this.node.append(this._forms, this._uploads);
    this._buildForms();
    this._renderUploads();
  }

  protected render(s: IStatus): void {
    const c = vfoldersContent(s.vfolders, s.user);
    if (c.kind === 'error') {
      this.body.replaceChildren(errorLine(c.message));
      return;
    }
    const out: Node[] = [];
    if (c.total) {
      out.push(row('All my vfolders', c.total.text), bar(c.total.fraction));
    }
    if (c.empty) {
      out.push(muted(c.empty));
    }
    for (const vf of c.items) {
      out.push(
        el(
          'div',
          { class: 'gpuhub-vf', 'data-vfolder': vf.name },
          el(
            'div',
            { class: 'gpuhub-vf-head' },
            el('strong', {}, vf.name),
            el('span', { class: 'gpuhub-tag' }, vf.access),
            vf.from ? el('span', { class: 'gpuhub-muted' }, vf.from) : ''
          ),
          el('div', { class: 'gpuhub-vf-mount' }, vf.mount),
          el('div', { class: 'gpuhub-vf-usage' }, vf.usage),
          bar(vf.fraction)
        )
      );
    }
    if (c.invitations.length) {
      out.push(el('div', { class: 'gpuhub-sub' }, 'Invitations'));
      for (const i of c.invitations) {
        out.push(
          el(
            'div',
            { class: 'gpuhub-invitation' },
            el('span', {}, i.text),
            el('button', { class: 'jp-mod-styled jp-mod-accept gpuhub-btn', onclick: () => void this._answer(i.id, 'accept') }, 'Accept'),
            el('button', { class: 'jp-mod-styled gpuhub-btn', onclick: () => void this._answer(i.id, 'reject') }, 'Reject')
          )
        );
      }
    }
    if (c.invitationsError) {
      out.push(errorLine(c.invitationsError));
    }
    this.body.replaceChildren(...out);
    const items = s.vfolders.items ?? [];
    fillSelect(this._shareSelect, shareable(items));
    fillSelect(this._uploadSelect, uploadable(items));
  }

  private _answer(id: string, answer: 'accept' | 'reject'): Promise<void> {
    return this.model.act(`invitation ${answer}`, () =>
      requestAPI(`invitations/${encodeURIComponent(id)}/${answer}`, { method: 'POST' })
    );
  }

  private _buildForms(): void {
    const name = el('input', { class: 'jp-mod-styled', placeholder: 'name', 'aria-label': 'new vfolder name' }) as HTMLInputElement;
    const auto = el('input', { type: 'checkbox', 'aria-label': 'mount automatically' }) as HTMLInputElement;
    const create = el(
      'form',
      { class: 'gpuhub-form gpuhub-create' },
      el('div', { class: 'gpuhub-sub gpuhub-form-title' }, 'Create a vfolder'),
      name,
      el('label', {}, auto, ' auto-mount'),
      el('button', { class: 'jp-mod-styled gpuhub-btn', type: 'submit' }, 'Create')
    );
    create.addEventListener('submit', e => {
      e.preventDefault();
      void this.model
        .act('create vfolder', () =>
          requestAPI('vfolders', { method: 'POST', body: JSON.stringify({ name: name.value.trim(), auto_mount: auto.checked }) })
        )
        .then(() => (name.value = ''));
    });

    const shareSel = el('select', { class: 'jp-mod-styled', 'aria-label': 'vfolder to share' }) as HTMLSelectElement;
    const who = el('input', { class: 'jp-mod-styled', placeholder: 'user name', 'aria-label': 'share with user' }) as HTMLInputElement;
    const perm = el(
      'select',
      { class: 'jp-mod-styled', 'aria-label': 'permission' },
      el('option', { value: 'ro' }, 'ro'),
      el('option', { value: 'rw' }, 'rw')
    ) as HTMLSelectElement;
    const share = el(
      'form',
      { class: 'gpuhub-form gpuhub-share' },
      el('div', { class: 'gpuhub-sub gpuhub-form-title' }, 'Share a vfolder'),
      shareSel,
      who,
      perm,
      el('button', { class: 'jp-mod-styled gpuhub-btn', type: 'submit' }, 'Share')
    );
    share.addEventListener('submit', e => {
      e.preventDefault();
      void this.model
        .act('share', () =>
          requestAPI(`vfolders/${encodeURIComponent(shareSel.value)}/shares`, {
            method: 'POST',
            body: JSON.stringify({ user: who.value.trim(), permission: perm.value })
          })
        )
        .then(() => (who.value = ''));
    });

    const upSel = el('select', { class: 'jp-mod-styled', 'aria-label': 'vfolder to upload into', 'data-testid': 'upload-vfolder' }) as HTMLSelectElement;
    const file = el('input', { type: 'file', class: 'gpuhub-file', 'aria-label': 'file to upload', 'data-testid': 'upload-file' }) as HTMLInputElement;
    file.addEventListener('change', () => {
      const f = file.files && file.files[0];
      if (f && upSel.value) {
        const vfName = upSel.selectedOptions[0]?.textContent ?? upSel.value;
        this._active.add(uploadKey(upSel.value, f));
        startUpload(f, upSel.value, vfName, () => this._renderUploads()).catch(e =>
          this.model.fail(`upload: ${(e as Error).message}`)
        );
        file.value = '';
      } else if (f) {
        this.model.fail('upload: choose a vfolder you may write to first');
      }
    });
    const upload = el(
      'div',
      { class: 'gpuhub-form gpuhub-upload' },
      el('div', { class: 'gpuhub-sub gpuhub-form-title' }, 'Resumable upload into a vfolder'),
      upSel,
      file
    );
    this._shareSelect = shareSel;
    this._uploadSelect = upSel;
    this._forms.append(create, share, upload);
  }

  private _renderUploads(): void {
    this._uploads.replaceChildren(
      ...shownUploads(loadRecords()).map(r => {
        const line = uploadLine(r, r.state === 'uploading' && this._active.has(r.key));
        return el(
          'div',
          { class: `gpuhub-upload-rec gpuhub-upload-${line.state}`, 'data-upload': r.name, 'data-state': line.state },
          el('div', {}, el('strong', {}, r.name), line.detail, el('span', { 'data-testid': 'upload-status' }, line.status)),
          el('progress', { max: r.size || 1, value: r.sent, 'data-testid': 'upload-progress' }),
          line.resumed ? el('div', { class: 'gpuhub-muted', 'data-testid': 'upload-resumed' }, line.resumed) : '',
          line.dismissable
            ? el(
                'button',
                {
                  class: 'jp-mod-styled gpuhub-btn gpuhub-link',
                  onclick: () => {
                    forgetRecord(r.key);
                    this._renderUploads();
                  }
                },
                'dismiss'
              )
            : ''
        );
      })
    );
  }

  private _forms: HTMLElement;
  private _uploads: HTMLElement;
  private _shareSelect!: HTMLSelectElement;
  private _uploadSelect!: HTMLSelectElement;
  private _active = new Set<string>();
}

/** Fill a <select> with vfolders, keeping the choice when it is still there. */
function fillSelect(sel: HTMLSelectElement, list: IVfolder[]): void {
  const want = list.map(v => `${v.id}:${v.name}`).join(',');
  if (sel.dataset.items === want) {
    return;
  }
  const keep = sel.value;
  sel.replaceChildren(...list.map(v => el('option', { value: v.id }, v.name)));
  sel.dataset.items = want;
  if (list.some(v => v.id === keep)) {
    sel.value = keep;
  }
}
