/** What the "My share" section shows for a status (pure; the view renders it). */
import { clockTime, describeShare, formatDuration, formatMB, nvlinkGroups } from '../format';
import { IShare } from '../status';

/** When less than this is left (seconds), the time left is urgent (red). */
export const URGENT_S = 15 * 60;

export type ShareContent =
  | { kind: 'error'; message: string }
  | { kind: 'none'; text: string }
  | {
      kind: 'share';
      headline: string;
      host: string;
      devices: string;
      /** the devices with their full UUIDs (a tooltip) */
      devicesTitle: string;
      nvlink: string;
      cpuMemory: string;
      allocation: string;
      /** hours one press of Extend asks for; null: not offered */
      extendHours: number | null;
      /** why Extend is not offered (null: it is, or no reason given) */
      extendReason: string | null;
      notice: string | null;
    };

export function shareContent(share: IShare): ShareContent {
  if (share.error) {
    return { kind: 'error', message: share.error };
  }
  const a = share.allocation;
  if (!a) {
    return { kind: 'none', text: 'No GPU share in this session (CPU only).' };
  }
  return {
    kind: 'share',
    headline: describeShare(a.gpus, a.devices),
    host: a.host,
    // short enough for the panel's narrowest width; the UUIDs are in devicesTitle
    devices: a.devices.map(d => `GPU ${d.index ?? '?'} · ${d.fraction}`).join(', '),
    devicesTitle: a.devices.map(d => `GPU ${d.index ?? '?'}: ${d.uuid} (${d.fraction})`).join('\n'),
    nvlink: nvlinkGroups(a.devices),
    cpuMemory: `${a.cpu} cores · ${formatMB(parseInt(a.mem, 10))}`,
    allocation: a.id,
    extendHours: share.extend.allowed ? share.extend.hours ?? 1 : null,
    extendReason: !share.extend.allowed && share.extend.reason ? `Extend: ${share.extend.reason}` : null,
    notice: share.notice || null
  };
}

/** The time left at `now` (epoch s) for an end at `endsAt`: "7h 59m (until 18:00)", urgent under 15 minutes. */
export function timeLeft(
  endsAt: number | null | undefined,
  now: number,
  clock: (t: number) => string = clockTime
): { text: string; urgent: boolean } {
  if (endsAt === null || endsAt === undefined) {
    return { text: 'no limit', urgent: false };
  }
  const left = endsAt - now;
  return { text: `${formatDuration(left)} (until ${clock(endsAt)})`, urgent: left < URGENT_S };
}
