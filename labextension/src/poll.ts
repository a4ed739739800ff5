/**
 * The panel's polling: every `interval` ms while visible, never while hidden;
 * one request at a time; after an error, back off (doubling up to `maxInterval`)
 * and report it to the panel instead of the console. Unit-tested with fake timers.
 */

export interface IPollerOptions<T> {
  /** what to fetch */
  fetch: () => Promise<T>;
  /** each answer */
  onData: (data: T) => void;
  /** each failure (shown in the panel), and null once it works again */
  onError: (error: Error | null) => void;
  interval?: number;
  maxInterval?: number;
  /** injectable timers (tests) */
  setTimeout?: (fn: () => void, ms: number) => any;
  clearTimeout?: (handle: any) => void;
}

export class Poller<T> {
  constructor(options: IPollerOptions<T>) {
    this._o = options;
    this.interval = options.interval ?? 5000;
    this.maxInterval = options.maxInterval ?? 60000;
    this._set = options.setTimeout ?? ((fn, ms) => setTimeout(fn, ms));
    this._clear = options.clearTimeout ?? (h => clearTimeout(h));
  }

  readonly interval: number;
  readonly maxInterval: number;

  /** ms until the next poll after the last outcome */
  get nextDelay(): number {
    return this._delay;
  }

  get visible(): boolean {
    return this._visible;
  }

  get failures(): number {
    return this._failures;
  }

  /** Shown: poll now, then every interval. Hidden: stop. */
  setVisible(visible: boolean): void {
    if (visible === this._visible || this._disposed) {
      return;
    }
    this._visible = visible;
    if (visible) {
      void this.refresh();
    } else {
      this._cancel();
    }
  }

  /** Poll now (e.g. after an action), then continue the schedule. */
  async refresh(): Promise<void> {
    this._cancel();
    if (this._inFlight) {
      this._again = true;
      return this._inFlight;
    }
    this._inFlight = this._run();
    try {
      await this._inFlight;
    } finally {
      this._inFlight = null;
    }
    if (this._again) {
      this._again = false;
      return this.refresh();
    }
  }

  dispose(): void {
    this._disposed = true;
    this._visible = false;
    this._cancel();
  }

  private async _run(): Promise<void> {
    try {
      const data = await this._o.fetch();
      if (this._failures) {
        this._o.onError(null);
      }
      this._failures = 0;
      this._delay = this.interval;
      this._o.onData(data);
    } catch (e) {
      this._failures++;
      this._delay = Math.min(this.maxInterval, this.interval * 2 ** this._failures);
      this._o.onError(e instanceof Error ? e : new Error(String(e)));
    }
    if (this._visible && !this._disposed) {
      this._handle = this._set(() => {
        this._handle = null;
        void this.refresh();
      }, this._delay);
    }
  }

  private _cancel(): void {
    if (this._handle !== null) {
      this._clear(this._handle);
      this._handle = null;
    }
  }

  private _o: IPollerOptions<T>;
  private _set: (fn: () => void, ms: number) => any;
  private _clear: (handle: any) => void;
  private _handle: any = null;
  private _visible = false;
  private _disposed = false;
  private _failures = 0;
  private _delay = 0;
  private _inFlight: Promise<void> | null = null;
  private _again = false;
}
