import {
  describeShare,
  formatBytes,
  formatDuration,
  formatMB,
  formatPercent,
  formatRate,
  IDevice,
  noticeSchedule,
  nvlinkGroups,
  queueText,
  quotaText,
  sparklinePoints,
  usageOf
} from '../format';

const dev = (i: number, island: string | null, fraction = '1'): IDevice => ({
  uuid: `GPU-${i}`,
  index: i,
  model: 'A100-SXM4-80GB',
  memory_mb: 81920,
  island,
  units: 1,
  fraction
});

describe('formatting', () => {
  it('formats bytes, megabytes and rates', () => {
    expect(formatBytes(0)).toBe('0 B');
    expect(formatBytes(1536)).toBe('1.50 KiB');
    expect(formatBytes(50 * 1024 * 1024)).toBe('50.0 MiB');
    expect(formatBytes(null)).toBe('–');
    expect(formatMB(40960)).toBe('40.0 GiB');
    expect(formatRate(2 * 1024 * 1024)).toBe('2.00 MiB/s');
  });

  it('formats the time left', () => {
    expect(formatDuration(8 * 3600)).toBe('8h 00m');
    expect(formatDuration(14 * 60 + 5)).toBe('14m 05s');
    expect(formatDuration(45.9)).toBe('45s');
    expect(formatDuration(0)).toBe('ended');
    expect(formatDuration(-3)).toBe('ended');
    expect(formatDuration(null)).toBe('no limit');
    expect(formatDuration(3 * 86400 + 7200)).toBe('3d 2h');
  });

  it('formats percentages and usage against quota', () => {
    expect(formatPercent(42.4)).toBe('42%');
    expect(formatPercent(20480, 40960)).toBe('50%');
    expect(usageOf(1024, null)).toEqual({ text: '1.00 KiB (no quota set)', fraction: null });
    expect(usageOf(512, 1024)).toEqual({ text: '512 B of 1.00 KiB', fraction: 0.5 });
    expect(usageOf(4096, 1024).fraction).toBe(1);
  });

  it('describes the share and its NVLink grouping', () => {
    expect(describeShare('0.5', [dev(0, 'nvswitch0', '0.5')])).toBe('0.5 × A100-SXM4-80GB');
    expect(describeShare('2', [dev(0, 'nvswitch0'), dev(1, 'nvswitch0')])).toBe('2 × A100-SXM4-80GB');
    expect(describeShare('0', [])).toBe('0 GPU');
    expect(nvlinkGroups([dev(0, 'nvswitch0'), dev(1, 'nvswitch0')])).toBe('nvswitch0: GPU 0, 1');
    expect(nvlinkGroups([dev(0, null)])).toBe('no NVLink');
  });

  it('draws sparklines', () => {
    expect(sparklinePoints([], 100, 20)).toBe('');
    expect(sparklinePoints([0, 50, 100], 100, 20, 100)).toBe('0,20 50,10 100,0');
    expect(sparklinePoints([5], 100, 20, 10)).toBe('100,10');
    // values above the ceiling are clipped
    expect(sparklinePoints([200], 10, 10, 100)).toBe('10,0');
  });
});

describe('time-left notices', () => {
  it('schedules 15 and 5 minutes before the end', () => {
    const s = noticeSchedule(1000 + 3600, 1000, new Set());
    expect(s).toEqual([
      { minutes: 15, delayMs: 45 * 60 * 1000 },
      { minutes: 5, delayMs: 55 * 60 * 1000 }
    ]);
  });

  it('fires only the most urgent passed notice at once, and never twice', () => {
    expect(noticeSchedule(1000 + 240, 1000, new Set())).toEqual([{ minutes: 5, delayMs: 0 }]);
    expect(noticeSchedule(1000 + 600, 1000, new Set())).toEqual([
      { minutes: 15, delayMs: 0 },
      { minutes: 5, delayMs: 300 * 1000 }
    ]);
    expect(noticeSchedule(1000 + 600, 1000, new Set([15]))).toEqual([{ minutes: 5, delayMs: 300 * 1000 }]);
    expect(noticeSchedule(1000, 1000, new Set())).toEqual([]);
    expect(noticeSchedule(null, 1000, new Set())).toEqual([]);
  });
});

describe('quotas and queue', () => {
  it('shows used / limit, or no limit', () => {
    expect(quotaText({ key: 'gpus', name: 'GPUs at once', used: '0.5', limit: '1', fraction: 0.5 })).toBe('0.5 / 1');
    expect(quotaText({ key: 'sessions', name: 'Sessions', used: 1, limit: 2, fraction: 0.5 })).toBe('1 / 2');
    expect(quotaText({ key: 'gpu_hours', name: 'GPU-hours', used: 4.04, limit: 40, fraction: 0.1 })).toBe('4 / 40');
    expect(quotaText({ key: 'gpu_hours', name: 'GPU-hours', used: 2.26, limit: null, fraction: null })).toBe('2.3 (no limit)');
    expect(
      quotaText({ key: 'gpu_hours', name: 'GPU-hours', used: 4.04, limit: 40, fraction: 0.1, text: '0.04 used + 4 reserved of 40' })
    ).toBe('0.04 used + 4 reserved of 40');
  });

  it('shows a queued request with position and ETA', () => {
    const clock = (t: number) => `@${t}`;
    const q = {
      id: 'q-2', gpus: '2', gpu_model: ['A100-SXM4-80GB'], server: 'big', position: 3,
      eta: 1000 + 7500, eta_latest: 1000 + 9000, reason: 'waiting for 2 × A100 to be free'
    };
    expect(queueText(q, 1000, clock)).toBe('#3 · 2 × A100-SXM4-80GB GPU (big) · starts in about 2h 05m (at the latest @10000)');
    expect(queueText({ ...q, eta: 900 }, 1000, clock)).toBe('#3 · 2 × A100-SXM4-80GB GPU (big) · starts soon (at the latest @10000)');
    expect(queueText({ ...q, gpu_model: [], server: '', position: null, eta: null, eta_latest: null }, 1000, clock)).toBe(
      '#? · 2 GPU · start unknown'
    );
  });
});
