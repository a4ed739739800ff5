/**
 * The time-left notices: JupyterLab notifications 15 and 5 minutes before the
 * share ends (with Extend when the allocator would consider it), scheduled from
 * the model's state whether or not the panel is open.
 */
import { Notification } from '@jupyterlab/apputils';
import { IDisposable } from '@lumino/disposable';
import { noticeSchedule } from './format';
import { GpuhubModel } from './model';

export class TimeLeftNotices implements IDisposable {
  constructor(model: GpuhubModel, extend: () => Promise<void>) {
    this._model = model;
    this._extend = extend;
    model.stateChanged.connect(this._schedule, this);
  }

  get isDisposed(): boolean {
    return this._disposed;
  }

  dispose(): void {
    this._disposed = true;
    this._model.stateChanged.disconnect(this._schedule, this);
    this._timers.forEach(t => window.clearTimeout(t));
  }

  private _schedule(): void {
    const s = this._model.status;
    if (!s) {
      return;
    }
    const endsAt = s.share && !s.share.error ? s.share.ends_at : null;
    if (endsAt === this._end) {
      return;
    }
    this._end = endsAt;
    this._timers.forEach(t => window.clearTimeout(t));
    this._timers = noticeSchedule(endsAt, s.now, this._shown).map(n =>
      window.setTimeout(() => this._notify(n.minutes), n.delayMs)
    );
  }

  private _notify(minutes: number): void {
    this._shown.add(minutes);
    const share = this._model.status?.share;
    const notice = share?.notice;
    Notification.warning(`gpuhub: your GPU share ends in ${minutes} minutes.${notice ? ' ' + notice : ' Save your work.'}`, {
      autoClose: false,
      actions: share?.extend.allowed ? [{ label: 'Extend', callback: () => void this._extend() }] : []
    });
  }

  private _model: GpuhubModel;
  private _extend: () => Promise<void>;
  private _end: number | null | undefined = undefined;
  private _timers: number[] = [];
  private _shown = new Set<number>();
  private _disposed = false;
}
