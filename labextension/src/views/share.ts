/** "My share": the GPU share, its host and devices, the time left (ticking) and Extend. */
import { requestAPI } from '../api';
import { GpuhubModel } from '../model';
import { shareContent, timeLeft } from '../sections/share';
import { IStatus } from '../status';
import { el, errorLine, muted, row } from './dom';
import { SectionView } from './section';

export class ShareView extends SectionView {
  constructor(model: GpuhubModel) {
    super(model, 'share', 'My share');
    this._tick = window.setInterval(() => this._updateClock(), 1000);
  }

  dispose(): void {
    window.clearInterval(this._tick);
    super.dispose();
  }

  /** Ask the allocator for more time (also the time-left notices' action). */
  extend(): Promise<void> {
    return this.model.act('extend', () => requestAPI('extend', { method: 'POST', body: '{}' }));
  }

  protected render(s: IStatus): void {
    const c = shareContent(s.share);
    this._endsAt = s.share.ends_at;
    this._clock = null;
    if (c.kind === 'error') {
      this.body.replaceChildren(errorLine(c.message));
      return;
    }
    if (c.kind === 'none') {
      this.body.replaceChildren(muted(c.text));
      return;
    }
    this._clock = el('span', { class: 'gpuhub-timeleft', 'data-testid': 'time-left' }, '');
    const extend =
      c.extendHours !== null
        ? el(
            'button',
            {
              class: 'jp-mod-styled jp-mod-accept gpuhub-btn',
              'data-testid': 'extend',
              title: `ask the allocator for ${c.extendHours} h more (once, if no queued request would wait longer for it)`,
              onclick: () => void this.extend()
            },
            'Extend'
          )
        : null;
    this.body.replaceChildren(
      el('div', { class: 'gpuhub-big', 'data-testid': 'share' }, c.headline),
      row('Host', el('span', { 'data-testid': 'host' }, c.host)),
      row('Devices', el('span', { title: c.devicesTitle }, c.devices)),
      row('NVLink', c.nvlink),
      row('CPU / memory', c.cpuMemory),
      row('Allocation', el('code', {}, c.allocation)),
      row('Time left', this._clock),
      extend ? el('div', { class: 'gpuhub-actions' }, extend) : '',
      c.notice ? el('div', { class: 'gpuhub-notice', 'data-testid': 'notice', role: 'status' }, c.notice) : '',
      c.extendReason
        ? el('div', { class: 'gpuhub-muted gpuhub-extend-reason', 'data-testid': 'extend-reason' }, c.extendReason)
        : ''
    );
    this._updateClock();
  }

  private _updateClock(): void {
    if (!this._clock) {
      return;
    }
    const t = timeLeft(this._endsAt, Date.now() / 1000 + this.model.clockSkew);
    this._clock.textContent = t.text;
    this._clock.classList.toggle('gpuhub-urgent', t.urgent);
  }

  private _tick: number;
  private _clock: HTMLElement | null = null;
  private _endsAt: number | null = null;
}
