/**
 * The gpuhub sidebar panel: my share and time left, live use of this share,
 * quotas, queue, vfolders (with resumable uploads) and storage. Plain DOM in a
 * Lumino widget; every text goes through textContent (no HTML from the server).
 */
import { Notification } from '@jupyterlab/apputils';
import { Widget } from '@lumino/widgets';
import { IMetrics, requestAPI, sessionMetrics } from './api';
import {
  describeShare,
  formatBytes,
  formatDuration,
  formatMB,
  formatPercent,
  formatRate,
  IDevice,
  noticeSchedule,
  queueText,
  quotaText,
  nvlinkGroups,
  sparklinePoints,
  usageOf
} from './format';
import { Poller } from './poll';
import { forgetRecord, loadRecords, startUpload, uploadKey } from './uploads';

type Attrs = Record<string, string | boolean | number | ((e: Event) => void)>;
type Child = Node | string | null | undefined | false;

/** el('div', {class: 'x'}, 'text', child) */
export function el(tag: string, attrs: Attrs = {}, ...children: Child[]): HTMLElement {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (typeof v === 'function') {
      e.addEventListener(k.replace(/^on/, ''), v);
    } else if (v === true) {
      e.setAttribute(k, '');
    } else if (v !== false) {
      e.setAttribute(k, String(v));
    }
  }
  for (const c of children) {
    if (c !== null && c !== undefined && c !== false) {
      e.append(c);
    }
  }
  return e;
}

const SVGNS = 'http://www.w3.org/2000/svg';

function sparkline(values: number[], max: number | undefined, cls: string, title: string): Element {
  const svg = document.createElementNS(SVGNS, 'svg');
  svg.setAttribute('class', `gpuhub-spark ${cls}`);
  svg.setAttribute('viewBox', '0 0 200 32');
  svg.setAttribute('preserveAspectRatio', 'none');
  svg.setAttribute('role', 'img');
  svg.setAttribute('aria-label', title);
  const line = document.createElementNS(SVGNS, 'polyline');
  line.setAttribute('points', sparklinePoints(values, 200, 30, max));
  svg.append(line);
  return svg;
}

function bar(fraction: number | null, cls = ''): HTMLElement {
  const f = fraction === null ? 0 : Math.max(0, Math.min(1, fraction));
  const warn = f >= 0.9 ? ' gpuhub-bar-warn' : '';
  return el(
    'div',
    { class: `gpuhub-bar ${cls}${warn}` },
    el('div', { class: 'gpuhub-bar-fill', style: `width: ${(f * 100).toFixed(1)}%` })
  );
}

function row(label: string, ...value: Child[]): HTMLElement {
  return el('div', { class: 'gpuhub-row' }, el('span', { class: 'gpuhub-label' }, label), el('span', { class: 'gpuhub-value' }, ...value));
}

function errorLine(message: string): HTMLElement {
  return el('div', { class: 'gpuhub-error', role: 'alert' }, message);
}

interface IAllocation {
  id: string;
  state: string;
  host: string;
  gpus: string;
  cpu: string;
  mem: string;
  max_hours: number;
  created: number;
  devices: IDevice[];
}

export interface IStatus {
  user: string;
  now: number;
  share: {
    error?: string;
    allocation: IAllocation | null;
    env: Record<string, string>;
    ends_at: number | null;
    time_left_s: number | null;
    notice?: string | null;
    extend: { allowed: boolean; reason: string; hours?: number | null };
  };
  live: {
    error?: string;
    source: string;
    label: string;
    utilization_gpu?: number;
    memory_used_mb?: number;
    memory_limit_mb?: number | null;
    history: number[][];
  };
  quotas: { error?: string; available?: boolean; items?: any[]; groups?: string[] };
  queue: { error?: string; available?: boolean; items?: any[]; waiting?: number };
  vfolders: {
    error?: string;
    items?: any[];
    invitations?: any[];
    invitations_error?: string | null;
    quota?: any;
  };
  storage: { error?: string; hosts?: any[] };
}

export class GpuhubPanel extends Widget {
  constructor() {
    super();
    this.id = 'gpuhub-panel';
    this.addClass('gpuhub-panel');
    this.title.caption = 'gpuhub: my GPU share';
    this.node.tabIndex = 0;

    const section = (key: string, title: string) => {
      const body = el('div', { class: 'gpuhub-section-body' });
      this.node.append(
        el('section', { class: `gpuhub-section gpuhub-${key}`, 'data-section': key }, el('h3', {}, title), body)
      );
      return body;
    };
    this.node.append(el('h2', { class: 'gpuhub-title' }, 'gpuhub'));
    this._banner = el('div', { class: 'gpuhub-banner' });
    this.node.append(this._banner);
    this._share = section('share', 'My share');
    this._live = section('live', 'Live use of this share');
    this._quotas = section('quotas', 'Quotas');
    this._queue = section('queue', 'Queue');
    this._vfolders = section('vfolders', 'vfolders');
    this._vfForms = el('div', { class: 'gpuhub-vf-forms' });
    this._uploads = el('div', { class: 'gpuhub-uploads' });
    this._vfolders.parentElement!.append(this._vfForms, this._uploads);
    this._storage = section('storage', 'Storage');
    this._buildForms();
    this._renderUploads();

    this._poller = new Poller<[IStatus, IMetrics | null]>({
      fetch: () => Promise.all([requestAPI<IStatus>('status'), sessionMetrics()]),
      onData: ([s, m]) => this._render(s, m),
      onError: e => this._showBanner(e ? `gpuhub: ${e.message}` : null),
      interval: 5000
    });
    this._tick = window.setInterval(() => this._updateClock(), 1000);
    this._onVisibility = () => this._syncVisible();
    document.addEventListener('visibilitychange', this._onVisibility);
  }

  /** Poll now (after an action). */
  refresh(): Promise<void> {
    return this._poller.refresh();
  }

  dispose(): void {
    this._poller.dispose();
    window.clearInterval(this._tick);
    this._noticeTimers.forEach(t => window.clearTimeout(t));
    document.removeEventListener('visibilitychange', this._onVisibility);
    super.dispose();
  }

  /** The first status, fetched when the lab starts (time-left notices work with the panel closed). */
  async prime(): Promise<void> {
    try {
      const s = await requestAPI<IStatus>('status');
      this._scheduleNotices(s);
    } catch {
      // the panel shows errors when opened
    }
  }

  protected onAfterShow(): void {
    this._syncVisible();
  }

  protected onAfterHide(): void {
    this._syncVisible();
  }

  private _syncVisible(): void {
    this._poller.setVisible(this.isVisible && document.visibilityState !== 'hidden');
  }

  private _showBanner(message: string | null): void {
    this._banner.replaceChildren(message ? errorLine(message) : '');
  }

  // --- rendering -------------------------------------------------------------------

  private _render(s: IStatus, metrics: IMetrics | null): void {
    this._status = s;
    this._clockSkew = s.now - Date.now() / 1000;
    this._renderShare(s);
    this._renderLive(s, metrics);
    this._renderFuture(this._quotas, s.quotas, 'no quota set', q =>
      el(
        'div',
        { class: 'gpuhub-quota', 'data-key': q.key },
        row(q.name, el('span', { 'data-testid': `quota-${q.key}` }, quotaText(q))),
        bar(q.fraction ?? null)
      )
    );
    this._renderFuture(this._queue, s.queue, 'no other requests waiting', q =>
      el(
        'div',
        { class: 'gpuhub-queued', 'data-request': q.id, title: q.reason || '' },
        el('div', { 'data-testid': 'queued' }, queueText(q, s.now)),
        q.reason ? el('div', { class: 'gpuhub-muted gpuhub-queued-reason' }, q.reason) : ''
      )
    );
    this._renderVfolders(s);
    this._renderStorage(s);
    this._scheduleNotices(s);
  }

  private _renderShare(s: IStatus): void {
    const sh = s.share;
    if (sh.error) {
      this._share.replaceChildren(errorLine(sh.error));
      return;
    }
    const a = sh.allocation;
    if (!a) {
      this._share.replaceChildren(el('div', { class: 'gpuhub-muted' }, 'No GPU share in this session (CPU only).'));
      return;
    }
    const devices = a.devices
      .map(d => `GPU ${d.index ?? '?'} (${d.uuid.slice(0, 12)}…, ${d.fraction})`)
      .join(', ');
    this._clock = el('span', { class: 'gpuhub-timeleft', 'data-testid': 'time-left' }, '');
    const extend = sh.extend.allowed
      ? el(
          'button',
          {
            class: 'jp-mod-styled jp-mod-accept gpuhub-btn',
            'data-testid': 'extend',
            title: `ask the allocator for ${sh.extend.hours ?? 1} h more (once, if no queued request would wait longer for it)`,
            onclick: () => void this._extend()
          },
          'Extend'
        )
      : null;
    this._share.replaceChildren(
      el('div', { class: 'gpuhub-big', 'data-testid': 'share' }, describeShare(a.gpus, a.devices)),
      row('Host', el('span', { 'data-testid': 'host' }, a.host)),
      row('Devices', devices),
      row('NVLink', nvlinkGroups(a.devices)),
      row('CPU / memory', `${a.cpu} cores · ${formatMB(parseInt(a.mem, 10))}`),
      row('Allocation', el('code', {}, a.id)),
      row('Time left', this._clock, extend),
      sh.notice ? el('div', { class: 'gpuhub-notice', 'data-testid': 'notice', role: 'status' }, sh.notice) : '',
      !sh.extend.allowed && sh.extend.reason
        ? el('div', { class: 'gpuhub-muted gpuhub-extend-reason', 'data-testid': 'extend-reason' }, `Extend: ${sh.extend.reason}`)
        : ''
    );
    this._updateClock();
  }

  private _updateClock(): void {
    const s = this._status;
    if (!this._clock || !s || s.share.ends_at === null || s.share.ends_at === undefined) {
      if (this._clock) {
        this._clock.textContent = 'no limit';
      }
      return;
    }
    const now = Date.now() / 1000 + this._clockSkew;
    const left = s.share.ends_at - now;
    this._clock.textContent = `${formatDuration(left)} (until ${new Date(s.share.ends_at * 1000).toLocaleTimeString()})`;
    this._clock.classList.toggle('gpuhub-urgent', left < 15 * 60);
  }

  private _renderLive(s: IStatus, m: IMetrics | null): void {
    const l = s.live;
    const parts: Child[] = [];
    if (l.error) {
      parts.push(errorLine(l.error));
    }
    if (l.utilization_gpu !== undefined) {
      const limit = l.memory_limit_mb ?? null;
      const hist = l.history || [];
      parts.push(
        el('div', { class: `gpuhub-source gpuhub-source-${l.source}`, 'data-testid': 'live-source' }, l.label),
        row('GPU utilisation', el('span', { 'data-testid': 'gpu-util' }, formatPercent(l.utilization_gpu))),
        bar((l.utilization_gpu ?? 0) / 100),
        sparkline(hist.map(p => p[1]), 100, 'gpuhub-spark-util', 'GPU utilisation, last 10 minutes'),
        row('GPU memory', `${formatMB(l.memory_used_mb)} of ${limit ? formatMB(limit) : '–'} (share)`),
        bar(limit ? (l.memory_used_mb ?? 0) / limit : null),
        sparkline(hist.map(p => p[2]), limit ?? undefined, 'gpuhub-spark-mem', 'GPU memory, last 10 minutes')
      );
    } else if (!l.error) {
      parts.push(el('div', { class: 'gpuhub-muted' }, l.label));
    }
    const a = s.share.allocation;
    if (m) {
      const memLimit = a ? parseInt(a.mem, 10) * 1024 * 1024 : m.limits?.memory?.rss;
      parts.push(
        el('div', { class: 'gpuhub-sub' }, 'This session (jupyter-resource-usage)'),
        row(
          'CPU',
          m.cpu_percent !== undefined
            ? `${m.cpu_percent.toFixed(0)}%${a ? ` of ${a.cpu} cores` : ''}`
            : '–'
        ),
        row('Memory', `${formatBytes(m.rss)}${memLimit ? ` of ${formatBytes(memLimit)}` : ''}`),
        bar(memLimit ? m.rss / memLimit : null)
      );
    }
    this._live.replaceChildren(...parts.filter(Boolean as any as (c: Child) => c is Node));
  }

  private _renderFuture(target: HTMLElement, data: IStatus['quotas'], empty: string, item: (q: any) => HTMLElement): void {
    if (data.error) {
      target.replaceChildren(errorLine(data.error));
    } else if (!data.items || data.items.length === 0) {
      target.replaceChildren(el('div', { class: 'gpuhub-muted' }, empty));
    } else {
      target.replaceChildren(...data.items.map(item));
    }
  }

  private _renderVfolders(s: IStatus): void {
    const v = s.vfolders;
    if (v.error) {
      this._vfolders.replaceChildren(errorLine(v.error));
      return;
    }
    const items = v.items ?? [];
    const out: Node[] = [];
    if (v.quota && v.quota.usage) {
      const u = usageOf(v.quota.usage.bytes, v.quota.bytes);
      out.push(row('All my vfolders', u.text), bar(u.fraction));
    }
    if (!items.length) {
      out.push(el('div', { class: 'gpuhub-muted' }, 'No vfolders yet: create one below.'));
    }
    for (const vf of items) {
      const here = vf.here || {};
      const u = usageOf(vf.usage?.bytes, vf.quota?.bytes);
      out.push(
        el(
          'div',
          { class: 'gpuhub-vf', 'data-vfolder': vf.name },
          el(
            'div',
            { class: 'gpuhub-vf-head' },
            el('strong', {}, vf.name),
            el('span', { class: 'gpuhub-tag' }, vf.access),
            vf.owner !== s.user ? el('span', { class: 'gpuhub-muted' }, ` from ${vf.owner}`) : ''
          ),
          el(
            'div',
            { class: 'gpuhub-vf-mount' },
            here.mounted ? `${here.path} (${here.mode})` : `not mounted here (${here.path})`
          ),
          el('div', { class: 'gpuhub-vf-usage' }, u.text, vf.over_quota ? ' — over quota' : ''),
          bar(u.fraction)
        )
      );
    }
    const inv = v.invitations ?? [];
    if (inv.length) {
      out.push(el('div', { class: 'gpuhub-sub' }, 'Invitations'));
      for (const i of inv) {
        out.push(
          el(
            'div',
            { class: 'gpuhub-invitation' },
            el('span', {}, `${i.vfolder_name ?? i.name ?? i.vfolder ?? 'vfolder'} from ${i.owner ?? i.from ?? '?'} (${i.permission})`),
            el('button', { class: 'jp-mod-styled jp-mod-accept gpuhub-btn', onclick: () => void this._answer(i.id, 'accept') }, 'Accept'),
            el('button', { class: 'jp-mod-styled gpuhub-btn', onclick: () => void this._answer(i.id, 'reject') }, 'Reject')
          )
        );
      }
    }
    if (v.invitations_error) {
      out.push(errorLine(v.invitations_error));
    }
    this._vfolders.replaceChildren(...out);
    this._fillVfolderSelects(items);
  }

  private _renderStorage(s: IStatus): void {
    const st = s.storage;
    if (st.error) {
      this._storage.replaceChildren(errorLine(st.error));
      return;
    }
    const hosts = st.hosts ?? [];
    if (!hosts.length) {
      this._storage.replaceChildren(el('div', { class: 'gpuhub-muted' }, 'No storage hosts.'));
      return;
    }
    this._storage.replaceChildren(
      ...hosts.map(h => {
        const used = h.capacity_bytes ? h.used_bytes / h.capacity_bytes : null;
        const hist: number[][] = h.history || [];
        return el(
          'div',
          { class: 'gpuhub-host', 'data-host': h.name },
          el('strong', {}, h.name),
          h.error ? errorLine(h.error) : '',
          row('Used / free', `${formatBytes(h.used_bytes)} / ${formatBytes(h.free_bytes)}`),
          bar(used),
          row('Read', el('span', { 'data-testid': 'storage-read' }, formatRate(h.io_bytes_read))),
          sparkline(hist.map(p => p[1]), undefined, 'gpuhub-spark-read', 'read throughput'),
          row('Write', el('span', { 'data-testid': 'storage-write' }, formatRate(h.io_bytes_write))),
          sparkline(hist.map(p => p[2]), undefined, 'gpuhub-spark-write', 'write throughput'),
          row('Written in total', el('span', { 'data-testid': 'storage-written' }, formatBytes(h.write_bytes)))
        );
      })
    );
  }

  // --- notices -------------------------------------------------------------------------

  private _scheduleNotices(s: IStatus): void {
    const endsAt = s.share && !s.share.error ? s.share.ends_at : null;
    if (endsAt === this._noticeEnd) {
      return;
    }
    this._noticeEnd = endsAt;
    this._noticeTimers.forEach(t => window.clearTimeout(t));
    this._noticeTimers = [];
    for (const n of noticeSchedule(endsAt, s.now, this._noticesShown)) {
      this._noticeTimers.push(
        window.setTimeout(() => {
          this._noticesShown.add(n.minutes);
          const extendable = this._status?.share.extend.allowed;
          const notice = this._status?.share.notice;
          Notification.warning(
            `gpuhub: your GPU share ends in ${n.minutes} minutes.${notice ? ' ' + notice : ' Save your work.'}`,
            {
              autoClose: false,
              actions: extendable ? [{ label: 'Extend', callback: () => void this._extend() }] : []
            }
          );
        }, n.delayMs)
      );
    }
  }

  // --- actions -------------------------------------------------------------------------

  private async _act(what: string, fn: () => Promise<unknown>): Promise<void> {
    try {
      await fn();
      this._showBanner(null);
    } catch (e) {
      this._showBanner(`${what}: ${(e as Error).message}`);
    }
    await this.refresh();
  }

  private _extend(): Promise<void> {
    return this._act('extend', () => requestAPI('extend', { method: 'POST', body: '{}' }));
  }

  private _answer(id: string, answer: 'accept' | 'reject'): Promise<void> {
    return this._act(`invitation ${answer}`, () => requestAPI(`invitations/${encodeURIComponent(id)}/${answer}`, { method: 'POST' }));
  }

  private _buildForms(): void {
    const name = el('input', { class: 'jp-mod-styled', placeholder: 'new vfolder name', 'aria-label': 'new vfolder name' }) as HTMLInputElement;
    const auto = el('input', { type: 'checkbox', 'aria-label': 'mount automatically' }) as HTMLInputElement;
    const create = el('form', { class: 'gpuhub-form gpuhub-create' }, el('div', { class: 'gpuhub-sub gpuhub-form-title' }, 'Create a vfolder'), name, el('label', {}, auto, ' auto-mount'), el('button', { class: 'jp-mod-styled gpuhub-btn', type: 'submit' }, 'Create'));
    create.addEventListener('submit', e => {
      e.preventDefault();
      void this._act('create vfolder', () =>
        requestAPI('vfolders', { method: 'POST', body: JSON.stringify({ name: name.value.trim(), auto_mount: auto.checked }) })
      ).then(() => (name.value = ''));
    });

    const shareSel = el('select', { class: 'jp-mod-styled', 'aria-label': 'vfolder to share' }) as HTMLSelectElement;
    const who = el('input', { class: 'jp-mod-styled', placeholder: 'user name', 'aria-label': 'share with user' }) as HTMLInputElement;
    const perm = el('select', { class: 'jp-mod-styled', 'aria-label': 'permission' }, el('option', { value: 'ro' }, 'ro'), el('option', { value: 'rw' }, 'rw')) as HTMLSelectElement;
    const share = el('form', { class: 'gpuhub-form gpuhub-share' }, el('div', { class: 'gpuhub-sub gpuhub-form-title' }, 'Share a vfolder'), shareSel, who, perm, el('button', { class: 'jp-mod-styled gpuhub-btn', type: 'submit' }, 'Share'));
    share.addEventListener('submit', e => {
      e.preventDefault();
      void this._act('share', () =>
        requestAPI(`vfolders/${encodeURIComponent(shareSel.value)}/shares`, {
          method: 'POST',
          body: JSON.stringify({ user: who.value.trim(), permission: perm.value })
        })
      ).then(() => (who.value = ''));
    });

    const upSel = el('select', { class: 'jp-mod-styled', 'aria-label': 'vfolder to upload into', 'data-testid': 'upload-vfolder' }) as HTMLSelectElement;
    const file = el('input', { type: 'file', class: 'gpuhub-file', 'aria-label': 'file to upload', 'data-testid': 'upload-file' }) as HTMLInputElement;
    file.addEventListener('change', () => {
      const f = file.files && file.files[0];
      if (f && upSel.value) {
        const vfName = upSel.selectedOptions[0]?.textContent ?? upSel.value;
        this._active.add(uploadKey(upSel.value, f));
        startUpload(f, upSel.value, vfName, () => this._renderUploads()).catch(e =>
          this._showBanner(`upload: ${(e as Error).message}`)
        );
        file.value = '';
      } else if (f) {
        this._showBanner('upload: choose a vfolder you may write to first');
      }
    });
    const upload = el('div', { class: 'gpuhub-form gpuhub-upload' }, el('div', { class: 'gpuhub-sub gpuhub-form-title' }, 'Resumable upload into a vfolder'), upSel, file);
    this._shareSelect = shareSel;
    this._uploadSelect = upSel;
    this._vfForms.append(create, share, upload);
  }

  private _fillVfolderSelects(items: any[]): void {
    const fill = (sel: HTMLSelectElement, list: any[]) => {
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
    };
    fill(this._shareSelect, items.filter(v => v.access === 'owner' || v.access === 'admin'));
    fill(this._uploadSelect, items.filter(v => v.access !== 'ro' && v.state === 'ready'));
  }

  private _renderUploads(): void {
    const all = loadRecords();
    const shown = all.filter(r => r.state !== 'done').concat(all.filter(r => r.state === 'done').slice(0, 1));
    this._uploads.replaceChildren(
      ...shown.map(r => {
        const f = r.size ? r.sent / r.size : 1;
        const live = r.state === 'uploading' && this._active.has(r.key);
        const state = r.state === 'uploading' && !live ? 'interrupted' : r.state;
        const status =
          state === 'done'
            ? 'done'
            : state === 'error'
              ? `failed: ${r.error}`
              : state === 'uploading'
                ? formatPercent(f * 100)
                : `interrupted at ${formatPercent(f * 100)}: choose ${r.name} again to resume`;
        return el(
          'div',
          { class: `gpuhub-upload-rec gpuhub-upload-${state}`, 'data-upload': r.name, 'data-state': state },
          el(
            'div',
            {},
            el('strong', {}, r.name),
            ` → ${r.vfolderName} · ${formatBytes(r.sent)} of ${formatBytes(r.size)} · `,
            el('span', { 'data-testid': 'upload-status' }, status)
          ),
          el('progress', { max: r.size || 1, value: r.sent, 'data-testid': 'upload-progress' }),
          r.resumedFrom !== undefined
            ? el('div', { class: 'gpuhub-muted', 'data-testid': 'upload-resumed' }, `resumed at ${formatBytes(r.resumedFrom)}`)
            : '',
          !live
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

  private _poller: Poller<[IStatus, IMetrics | null]>;
  private _banner: HTMLElement;
  private _share: HTMLElement;
  private _live: HTMLElement;
  private _quotas: HTMLElement;
  private _queue: HTMLElement;
  private _vfolders: HTMLElement;
  private _vfForms: HTMLElement;
  private _uploads: HTMLElement;
  private _storage: HTMLElement;
  private _shareSelect!: HTMLSelectElement;
  private _uploadSelect!: HTMLSelectElement;
  private _status: IStatus | null = null;
  private _clock: HTMLElement | null = null;
  private _clockSkew = 0;
  private _tick: number;
  private _noticeEnd: number | null | undefined = undefined;
  private _noticeTimers: number[] = [];
  private _noticesShown = new Set<number>();
  private _onVisibility: () => void;
  private _active = new Set<string>();
}
