/**
 * Pure formatting helpers of the gpuhub panel (unit-tested in __tests__/format.spec.ts).
 */

const UNITS = ['B', 'KiB', 'MiB', 'GiB', 'TiB', 'PiB'];

/** 1536 -> "1.5 KiB"; null/undefined -> "–". */
export function formatBytes(n: number | null | undefined): string {
  if (n === null || n === undefined || !isFinite(n)) {
    return '–';
  }
  let v = Math.max(0, n);
  let i = 0;
  while (v >= 1024 && i < UNITS.length - 1) {
    v /= 1024;
    i++;
  }
  const digits = i === 0 || v >= 100 ? 0 : v >= 10 ? 1 : 2;
  return `${v.toFixed(digits)} ${UNITS[i]}`;
}

/** Megabytes (the allocator's unit) as bytes text: 40960 -> "40.0 GiB". */
export function formatMB(mb: number | null | undefined): string {
  return mb === null || mb === undefined ? '–' : formatBytes(mb * 1024 * 1024);
}

/** Bytes per second: "12.3 MiB/s". */
export function formatRate(bps: number | null | undefined): string {
  return bps === null || bps === undefined ? '–' : `${formatBytes(bps)}/s`;
}

/** Seconds left as "7h 59m", "14m 05s", "45s", or "ended". */
export function formatDuration(seconds: number | null | undefined): string {
  if (seconds === null || seconds === undefined || !isFinite(seconds)) {
    return 'no limit';
  }
  const s = Math.floor(Math.max(0, seconds));
  if (s === 0) {
    return 'ended';
  }
  const d = Math.floor(s / 86400);
  const h = Math.floor((s % 86400) / 3600);
  const m = Math.floor((s % 3600) / 60);
  const sec = s % 60;
  if (d > 0) {
    return `${d}d ${h}h`;
  }
  if (h > 0) {
    return `${h}h ${String(m).padStart(2, '0')}m`;
  }
  if (m > 0) {
    return `${m}m ${String(sec).padStart(2, '0')}s`;
  }
  return `${sec}s`;
}

/** 0.4234 of 1 -> "42%"; against a limit. */
export function formatPercent(used: number | null | undefined, limit?: number | null): string {
  if (used === null || used === undefined) {
    return '–';
  }
  const pct = limit ? (100 * used) / limit : used;
  return `${Math.round(pct)}%`;
}

/** "used of limit" with a fraction 0..1 for a bar; limit null -> no quota. */
export function usageOf(
  used: number | null | undefined,
  limit: number | null | undefined
): { text: string; fraction: number | null } {
  const u = formatBytes(used ?? 0);
  if (!limit) {
    return { text: `${u} (no quota set)`, fraction: null };
  }
  return {
    text: `${u} of ${formatBytes(limit)}`,
    fraction: Math.min(1, Math.max(0, (used ?? 0) / limit))
  };
}

/** The share in words: "0.5 × A100-SXM4-80GB". */
export interface IDevice {
  uuid: string;
  index: number | null;
  model: string | null;
  memory_mb: number | null;
  island: string | null;
  units: number;
  fraction: string;
}

export function describeShare(gpus: string, devices: IDevice[]): string {
  if (!devices.length) {
    return `${gpus} GPU`;
  }
  const models = Array.from(new Set(devices.map(d => d.model ?? 'GPU')));
  if (devices.length === 1) {
    return `${devices[0].fraction} × ${models[0]}`;
  }
  return `${devices.length} × ${models.join(' + ')}`;
}

/** NVLink grouping of the share's devices: "nvswitch0: GPU 0, 1" or "no NVLink". */
export function nvlinkGroups(devices: IDevice[]): string {
  const groups = new Map<string, number[]>();
  for (const d of devices) {
    if (d.island) {
      const g = groups.get(d.island) ?? [];
      g.push(d.index ?? -1);
      groups.set(d.island, g);
    }
  }
  if (!groups.size) {
    return 'no NVLink';
  }
  return Array.from(groups.entries())
    .map(([island, idx]) => `${island}: GPU ${idx.join(', ')}`)
    .join('; ');
}

/**
 * An SVG polyline's points for a sparkline of values over width×height;
 * the vertical scale is 0..max (max: the largest value, or a fixed ceiling).
 */
export function sparklinePoints(
  values: number[],
  width: number,
  height: number,
  max?: number
): string {
  const vs = values.filter(v => v !== null && v !== undefined && isFinite(v));
  if (vs.length === 0) {
    return '';
  }
  const top = max ?? Math.max(...vs, 1e-9);
  const step = vs.length > 1 ? width / (vs.length - 1) : 0;
  return vs
    .map((v, i) => {
      const x = vs.length > 1 ? i * step : width;
      const y = height - (Math.min(Math.max(v, 0), top) / (top || 1)) * height;
      return `${round1(x)},${round1(y)}`;
    })
    .join(' ');
}

function round1(v: number): number {
  return Math.round(v * 10) / 10;
}

/** The notices before the end: minutes before, in the order they fire. */
export const NOTICE_MINUTES = [15, 5];

/**
 * Which notices are still to come, and in how many ms: for an end at endsAt
 * (epoch seconds) seen at now (epoch seconds). A notice whose moment has passed
 * but whose end has not fires at once (delay 0) unless already shown.
 */
export function noticeSchedule(
  endsAt: number | null,
  now: number,
  shown: Set<number>
): { minutes: number; delayMs: number }[] {
  if (endsAt === null || endsAt <= now) {
    return [];
  }
  const left = endsAt - now;
  const due = NOTICE_MINUTES.filter(m => !shown.has(m));
  // of the notices already due, only the most urgent one fires
  const passed = due.filter(m => left <= m * 60);
  const out: { minutes: number; delayMs: number }[] = [];
  if (passed.length) {
    out.push({ minutes: Math.min(...passed), delayMs: 0 });
  }
  for (const m of due) {
    if (left > m * 60) {
      out.push({ minutes: m, delayMs: Math.round((left - m * 60) * 1000) });
    }
  }
  return out;
}

/** A quota row of the panel (the server's quota_view): used / limit. */
export interface IQuotaItem {
  key: string;
  name: string;
  used: string | number | null;
  limit: string | number | null;
  fraction: number | null;
  /** the server's own words where it has them: GPU-hours "0.04 used + 4
   * reserved of 40", as the spawn form says them (gpuhub.numbers.gpu_hours_text) */
  text?: string;
}

/** "0.5 / 1", "4 / 40", or "4 (no limit)"; GPU-hours to one decimal, or the
 * server's text (used and reserved, each labelled) where it sends one. */
export function quotaText(q: IQuotaItem): string {
  if (q.text) {
    return q.text;
  }
  const num = (v: string | number | null): string =>
    v === null || v === undefined
      ? '0'
      : q.key === 'gpu_hours'
        ? Number(v).toFixed(1).replace(/\.0$/, '')
        : String(v);
  if (q.limit === null || q.limit === undefined || q.limit === '') {
    return `${num(q.used)} (no limit)`;
  }
  return `${num(q.used)} / ${num(q.limit)}`;
}

/** A time as the hub's pages show it: the browser's locale, hours and minutes
 * (hub_config/templates/gpuhub_clock.html's gpuhubClock). */
export function clockTime(t: number): string {
  return new Date(t * 1000).toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' });
}

/** A queued request of the panel (the server's queue_view). */
export interface IQueueItem {
  id: string;
  gpus: string;
  gpu_model: string[];
  server: string;
  position: number | null;
  eta: number | null;
  eta_latest: number | null;
  reason: string;
}

/** "#3 · 2 × A100 GPU · starts in about 2 h 5 min (at the latest 14:00)" at now (epoch s). */
export function queueText(q: IQueueItem, now: number, clock?: (t: number) => string): string {
  const at = clock ?? clockTime;
  const what = `${q.gpus}${q.gpu_model && q.gpu_model.length ? ' × ' + q.gpu_model.join('/') : ''} GPU`;
  const pos = q.position === null || q.position === undefined ? '#?' : `#${q.position}`;
  let eta = 'start unknown';
  if (q.eta !== null && q.eta !== undefined) {
    eta = q.eta <= now ? 'starts soon' : `starts in about ${formatDuration(q.eta - now)}`;
    if (q.eta_latest !== null && q.eta_latest !== undefined) {
      eta += ` (at the latest ${at(q.eta_latest)})`;
    }
  }
  return `${pos} · ${what}${q.server ? ` (${q.server})` : ''} · ${eta}`;
}
