/** What each section shows for a given model state (the views render exactly this). */
import { IDevice } from '../format';
import { bannerLines } from '../sections/banner';
import { liveContent, sessionUse } from '../sections/live';
import { queueContent } from '../sections/queue';
import { quotasContent } from '../sections/quotas';
import { shareContent, timeLeft } from '../sections/share';
import { storageContent } from '../sections/storage';
import { shareable, shownUploads, uploadable, uploadLine, vfoldersContent } from '../sections/vfolders';
import { IAllocation, IShare, IVfolder } from '../status';
import type { IUploadRecord } from '../uploads';

const dev: IDevice = {
  uuid: 'GPU-aaaabbbbccccdddd',
  index: 0,
  model: 'A100-SXM4-80GB',
  memory_mb: 81920,
  island: 'nvswitch0',
  units: 50,
  fraction: '0.5'
};
const alloc: IAllocation = {
  id: 'a-123',
  state: 'granted',
  host: 'node-a',
  gpus: '0.5',
  cpu: '2',
  mem: '4096M',
  max_hours: 8,
  created: 0,
  devices: [dev]
};
const share = (patch: Partial<IShare> = {}): IShare => ({
  allocation: alloc,
  env: {},
  ends_at: 1000,
  time_left_s: 100,
  notice: null,
  extend: { allowed: true, reason: '', hours: 1 },
  ...patch
});

describe('my share', () => {
  it('shows the share, its host, devices, NVLink, CPU and memory, and offers Extend', () => {
    expect(shareContent(share())).toEqual({
      kind: 'share',
      headline: '0.5 × A100-SXM4-80GB',
      host: 'node-a',
      devices: 'GPU 0 · 0.5',
      devicesTitle: `GPU 0: ${dev.uuid} (0.5)`,
      nvlink: 'nvswitch0: GPU 0',
      cpuMemory: '2 cores · 4.00 GiB',
      allocation: 'a-123',
      extendHours: 1,
      extendReason: null,
      notice: null
    });
  });

  it('says why Extend is not offered, and shows the allocator notice', () => {
    const c = shareContent(
      share({ notice: 'ends at 10:00', extend: { allowed: false, reason: 'this session was extended once already' } })
    );
    expect(c.kind === 'share' && [c.extendHours, c.extendReason, c.notice]).toEqual([
      null,
      'Extend: this session was extended once already',
      'ends at 10:00'
    ]);
  });

  it('shows a CPU-only session and a failed section as such', () => {
    expect(shareContent(share({ allocation: null }))).toEqual({
      kind: 'none',
      text: 'No GPU share in this session (CPU only).'
    });
    expect(shareContent(share({ error: 'allocator: HTTP 503: Service Unavailable' }))).toEqual({
      kind: 'error',
      message: 'allocator: HTTP 503: Service Unavailable'
    });
  });

  it('counts the time left down, urgent under 15 minutes', () => {
    const clock = (t: number) => `@${t}`;
    expect(timeLeft(8 * 3600, 0, clock)).toEqual({ text: '8h 00m (until @28800)', urgent: false });
    expect(timeLeft(1000, 1000 - 14 * 60, clock)).toEqual({ text: '14m 00s (until @1000)', urgent: true });
    expect(timeLeft(1000, 2000, clock)).toEqual({ text: 'ended (until @1000)', urgent: true });
    expect(timeLeft(null, 0)).toEqual({ text: 'no limit', urgent: false });
  });
});

describe('live use', () => {
  const live = {
    source: 'simulated',
    label: 'simulated: a declared (mock) GPU has nothing to measure',
    utilization_gpu: 42.4,
    memory_used_mb: 10240,
    memory_limit_mb: 40960,
    history: [
      [1, 40, 10000],
      [2, 42.4, 10240]
    ]
  };

  it('shows utilisation and memory against the share, with their histories', () => {
    const c = liveContent(live, alloc, null);
    expect(c.error).toBeNull();
    expect(c.message).toBeNull();
    expect(c.session).toBeNull();
    expect(c.gpu).toEqual({
      source: 'simulated',
      label: live.label,
      utilization: '42%',
      utilizationFraction: 0.424,
      utilizationHistory: [40, 42.4],
      memory: '10.0 GiB of 40.0 GiB (share)',
      memoryFraction: 0.25,
      memoryHistory: [10000, 10240],
      memoryMax: 40960
    });
  });

  it('says why there are no readings, and shows the error beside the history', () => {
    expect(liveContent({ source: 'none', label: 'no samples from this host yet', history: [] }, alloc, null)).toEqual({
      error: null,
      gpu: null,
      message: 'no samples from this host yet',
      session: null
    });
    const failed = liveContent({ source: 'none', label: 'x', history: [], error: 'allocator: down' }, alloc, null);
    expect([failed.error, failed.message]).toEqual(['allocator: down', null]);
  });

  it("shows the session's CPU of the share's cores and memory of the share's memory", () => {
    const m = { rss: 1024 * 1024 * 1024, cpu_percent: 37.6, limits: { memory: { rss: 8 * 1024 ** 3 } } };
    expect(sessionUse(m, alloc)).toEqual({ cpu: '38% of 2 cores', memory: '1.00 GiB of 4.00 GiB', memoryFraction: 0.25 });
    // no share: the server's own limit; no CPU reading: a dash
    expect(sessionUse({ rss: m.rss, limits: m.limits }, null)).toEqual({
      cpu: '–',
      memory: '1.00 GiB of 8.00 GiB',
      memoryFraction: 0.125
    });
  });
});

describe('quotas and queue', () => {
  it('lists quotas as used / limit with a bar, or says none is set', () => {
    const q = quotasContent({
      available: true,
      items: [
        { key: 'gpus', name: 'GPUs at once', used: '0.5', limit: '1', fraction: 0.5 },
        { key: 'gpu_hours', name: 'GPU-hours (last 7 days)', used: 4.04, limit: null, fraction: null }
      ]
    });
    expect(q).toEqual({
      kind: 'items',
      items: [
        { key: 'gpus', name: 'GPUs at once', text: '0.5 / 1', fraction: 0.5 },
        { key: 'gpu_hours', name: 'GPU-hours (last 7 days)', text: '4 (no limit)', fraction: null }
      ]
    });
    expect(quotasContent({ available: false, items: [] })).toEqual({ kind: 'empty', text: 'no quota set' });
    expect(quotasContent({ error: 'allocator: down' })).toEqual({ kind: 'error', message: 'allocator: down' });
  });

  it('lists the waiting requests with position, estimate and reason', () => {
    const item = {
      id: 'q-2',
      gpus: '2',
      gpu_model: ['A100-SXM4-80GB'],
      server: 'big',
      position: 3,
      eta: 1000 + 2 * 3600 + 5 * 60,
      eta_latest: 5000,
      reason: 'waiting for 2 GPUs'
    };
    expect(queueContent({ items: [item] }, 1000, t => `@${t}`)).toEqual({
      kind: 'items',
      items: [
        {
          id: 'q-2',
          text: '#3 · 2 × A100-SXM4-80GB GPU (big) · starts in about 2h 05m (at the latest @5000)',
          reason: 'waiting for 2 GPUs'
        }
      ]
    });
    expect(queueContent({ items: [] }, 0)).toEqual({ kind: 'empty', text: 'no other requests waiting' });
  });
});

describe('vfolders', () => {
  const vf = (patch: Partial<IVfolder>): IVfolder => ({
    id: 'vf1',
    name: 'data',
    owner: 'alice',
    access: 'owner',
    state: 'ready',
    usage: { bytes: 1024 },
    quota: { bytes: 4096 },
    here: { path: '~/vfolders/data', mounted: true, mode: 'rw' },
    ...patch
  });

  it('shows each vfolder: access, owner, where it is mounted, usage against its quota', () => {
    const c = vfoldersContent(
      {
        items: [
          vf({}),
          vf({
            id: 'vf2',
            name: 'refs',
            owner: 'bob',
            access: 'ro',
            quota: null,
            over_quota: true,
            here: { path: '~/vfolders/refs', mounted: false, mode: null }
          })
        ],
        invitations: [{ id: 's9', vfolder_name: 'shared', owner: 'carol', permission: 'rw' }],
        invitations_error: null,
        quota: { bytes: null, usage: { bytes: 2048 } }
      },
      'alice'
    );
    expect(c).toEqual({
      kind: 'vfolders',
      total: { text: '2.00 KiB (no quota set)', fraction: null },
      empty: null,
      items: [
        { id: 'vf1', name: 'data', access: 'owner', from: '', mount: '~/vfolders/data (rw)', usage: '1.00 KiB of 4.00 KiB', fraction: 0.25 },
        {
          id: 'vf2',
          name: 'refs',
          access: 'ro',
          from: ' from bob',
          mount: 'not mounted here (~/vfolders/refs)',
          usage: '1.00 KiB (no quota set) — over quota',
          fraction: null
        }
      ],
      invitations: [{ id: 's9', text: 'shared from carol (rw)' }],
      invitationsError: null
    });
  });

  it('says that a restart mounts a vfolder where the hub cannot mount into the running session', () => {
    const content = (live: boolean) =>
      vfoldersContent(
        {
          items: [vf({ here: { path: '~/vfolders/data', mounted: false, mode: null, live } })],
          invitations: [],
          invitations_error: null,
          quota: null
        },
        'alice'
      );
    expect(content(false).items[0].mount).toBe('not mounted here: restart your server to mount it at ~/vfolders/data');
    expect(content(true).items[0].mount).toBe('not mounted here (~/vfolders/data)');
  });

  it('invites to create one when there is none; a failed section shows its error', () => {
    const c = vfoldersContent({ items: [], invitations: [] }, 'alice');
    expect(c.kind === 'vfolders' && c.empty).toBe('No vfolders yet: create one below.');
    expect(vfoldersContent({ error: 'vfolders: down' }, 'alice')).toEqual({ kind: 'error', message: 'vfolders: down' });
  });

  it('offers to share own vfolders and to upload into writable, ready ones', () => {
    const items = [
      vf({ id: 'own' }),
      vf({ id: 'ro', access: 'ro' }),
      vf({ id: 'rw', access: 'rw' }),
      vf({ id: 'new', state: 'creating' }),
      vf({ id: 'home', kind: 'home' })
    ];
    // the home vfolder takes uploads but is never shared
    expect(shareable(items).map(v => v.id)).toEqual(['own', 'new']);
    expect(uploadable(items).map(v => v.id)).toEqual(['own', 'rw', 'home']);
  });

  it('shows an upload running, interrupted by a reload, failed or done', () => {
    const rec = (patch: Partial<IUploadRecord>): IUploadRecord => ({
      key: 'k',
      vfolder: 'vf1',
      vfolderName: 'data',
      name: 'big.bin',
      size: 4096,
      sent: 1024,
      state: 'uploading',
      updated: 0,
      ...patch
    });
    expect(uploadLine(rec({}), true)).toEqual({
      state: 'uploading',
      status: '25%',
      detail: ' → data · 1.00 KiB of 4.00 KiB · ',
      resumed: null,
      dismissable: false
    });
    expect(uploadLine(rec({}), false)).toMatchObject({
      state: 'interrupted',
      status: 'interrupted at 25%: choose big.bin again to resume',
      dismissable: true
    });
    expect(uploadLine(rec({ state: 'error', error: 'HTTP 507' }), false).status).toBe('failed: HTTP 507');
    expect(uploadLine(rec({ state: 'done', sent: 4096, resumedFrom: 1024 }), false)).toMatchObject({
      state: 'done',
      status: 'done',
      resumed: 'resumed at 1.00 KiB'
    });
    // the ones not done, and only the last one done
    const all = [rec({ key: 'd1', state: 'done' }), rec({ key: 'u' }), rec({ key: 'd2', state: 'done' })];
    expect(shownUploads(all).map(r => r.key)).toEqual(['u', 'd1']);
  });
});

describe('storage', () => {
  it("shows each host's used / free space and throughput with histories", () => {
    const c = storageContent({
      hosts: [
        {
          name: 'local',
          capacity_bytes: 100,
          used_bytes: 40,
          free_bytes: 50,
          used_percent: 44.4,
          write_bytes: 7,
          io_bytes_read: 1536,
          io_bytes_write: null,
          history: [[1, 1536, 0]]
        }
      ]
    });
    expect(c).toEqual({
      kind: 'hosts',
      hosts: [
        {
          name: 'local',
          error: null,
          usedFree: '40 B / 50 B (44%)',
          fraction: 0.444,
          read: '1.50 KiB/s',
          readHistory: [1536],
          write: '–',
          writeHistory: [0],
          written: '7 B',
          writtenBytes: 7
        }
      ]
    });
    expect(storageContent({ hosts: [] })).toEqual({ kind: 'empty', text: 'No storage hosts.' });
    expect(storageContent({ error: 'vfolders: down' })).toEqual({ kind: 'error', message: 'vfolders: down' });
  });
});

describe('banner', () => {
  it("shows the last action's failure and the poll's, nothing when both work", () => {
    expect(bannerLines(null, null)).toEqual([]);
    expect(bannerLines('500: boom', 'extend: 409: no')).toEqual(['extend: 409: no', 'gpuhub: 500: boom']);
  });
});
