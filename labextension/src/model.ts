/**
 * The panel's model: one class that fetches this session's status (and
 * jupyter-resource-usage's metrics) with a `Poll` from @lumino/polling, holds
 * it, and says when it changed. The views read it and render; they never fetch.
 *
 * Polling: every `interval` ms while the panel is shown, never while it is
 * hidden (or the browser tab is); one request at a time; after a failure the
 * poll backs off up to `maxInterval`, and the failure is the model's `error`
 * (shown in the panel) until a poll works again.
 */
import { IDisposable } from '@lumino/disposable';
import { Poll } from '@lumino/polling';
import { ISignal, Signal } from '@lumino/signaling';
import { IMetrics, IStatus } from './status';

export class GpuhubModel implements IDisposable {
  constructor(options: GpuhubModel.IOptions) {
    this._fetch = options.fetch;
    this._poll = new Poll({
      factory: () => this._update(),
      frequency: {
        interval: options.interval ?? 5000,
        backoff: true,
        max: Math.max(options.maxInterval ?? 60000, options.interval ?? 5000)
      },
      name: 'gpuhub:status',
      // hidden panel: no requests at all; shown: none while the browser tab is hidden
      standby: () => (this._active ? 'when-hidden' : true)
    });
  }

  /** Emitted after every poll (an answer or a failure) and every action. */
  get stateChanged(): ISignal<this, void> {
    return this._stateChanged;
  }

  /** The last status the server answered (null before the first). */
  get status(): IStatus | null {
    return this._status;
  }

  /** The session's CPU and memory (null without jupyter-resource-usage). */
  get metrics(): IMetrics | null {
    return this._metrics;
  }

  /** Why the last poll failed (null: it worked). */
  get error(): string | null {
    return this._error;
  }

  /** Why the last action failed (null: it worked, or none yet). */
  get actionError(): string | null {
    return this._actionError;
  }

  /** The server's clock minus this browser's (seconds), from the last status. */
  get clockSkew(): number {
    return this._clockSkew;
  }

  /** ms between polls (the setting `refreshInterval`). */
  get interval(): number {
    return this._poll.frequency.interval;
  }

  set interval(ms: number) {
    if (ms !== this._poll.frequency.interval) {
      const max = Math.max(this._poll.frequency.max, ms);
      this._poll.frequency = { ...this._poll.frequency, interval: ms, max };
    }
  }

  /** Whether anyone looks (the panel is shown): polls only then; becoming active polls at once. */
  get active(): boolean {
    return this._active;
  }

  set active(active: boolean) {
    if (active === this._active) {
      return;
    }
    this._active = active;
    if (active) {
      void this.refresh();
    }
  }

  get isDisposed(): boolean {
    return this._poll.isDisposed;
  }

  /** Poll now (e.g. after an action), then go on with the schedule. */
  refresh(): Promise<void> {
    return this._poll.refresh();
  }

  /** One status now, whether or not anyone looks (when the lab starts: time-left notices work with the panel closed). */
  async prime(): Promise<void> {
    try {
      await this._update();
    } catch {
      // the panel shows the error when opened
    }
  }

  /** Run an action (extend, create, share, …); its failure becomes `actionError`, labelled `what`; then poll. */
  async act(what: string, action: () => Promise<unknown>): Promise<void> {
    try {
      await action();
      this._actionError = null;
    } catch (e) {
      this._actionError = `${what}: ${(e as Error).message}`;
    }
    this._stateChanged.emit();
    await this.refresh();
  }

  /** Say that an action failed without running one (an upload's own failure). */
  fail(message: string | null): void {
    this._actionError = message;
    this._stateChanged.emit();
  }

  dispose(): void {
    this._poll.dispose();
    Signal.clearData(this);
  }

  private async _update(): Promise<void> {
    try {
      const [status, metrics] = await this._fetch();
      this._status = status;
      this._metrics = metrics;
      this._clockSkew = status.now - Date.now() / 1000;
      this._error = null;
    } catch (e) {
      this._error = e instanceof Error ? e.message : String(e);
      this._stateChanged.emit();
      throw e; // the poll backs off
    }
    this._stateChanged.emit();
  }

  private _fetch: () => Promise<[IStatus, IMetrics | null]>;
  private _poll: Poll;
  private _stateChanged = new Signal<this, void>(this);
  private _status: IStatus | null = null;
  private _metrics: IMetrics | null = null;
  private _error: string | null = null;
  private _actionError: string | null = null;
  private _clockSkew = 0;
  private _active = false;
}

export namespace GpuhubModel {
  export interface IOptions {
    /** what one poll fetches: the status and the session's metrics */
    fetch: () => Promise<[IStatus, IMetrics | null]>;
    /** ms between polls (default 5000) */
    interval?: number;
    /** the longest back-off after failures, ms (default 60000) */
    maxInterval?: number;
  }
}
