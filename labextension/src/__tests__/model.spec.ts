/** The model: polls only while active, holds the last answer, reports and clears failures, backs off. */
import { GpuhubModel } from '../model';
import { IMetrics, IStatus } from '../status';

const status = (now: number) => ({ now, user: 'alice' }) as unknown as IStatus;
const sleep = (ms: number) => new Promise(r => setTimeout(r, ms));

function fakeFetch() {
  const calls: number[] = [];
  let fail: string | null = null;
  const fetch = async (): Promise<[IStatus, IMetrics | null]> => {
    calls.push(Date.now());
    if (fail) {
      throw new Error(fail);
    }
    return [status(Date.now() / 1000 + 60), null];
  };
  return { calls, fetch, setFail: (f: string | null) => (fail = f) };
}

const models: GpuhubModel[] = [];
function make(options: GpuhubModel.IOptions): GpuhubModel {
  const m = new GpuhubModel(options);
  models.push(m);
  return m;
}
afterEach(() => models.splice(0).forEach(m => m.dispose()));

describe('GpuhubModel', () => {
  it('asks nothing while inactive, polls at once when activated, then every interval', async () => {
    const f = fakeFetch();
    const model = make({ fetch: f.fetch, interval: 100 });
    let changes = 0;
    model.stateChanged.connect(() => changes++);
    await sleep(250);
    expect(f.calls.length).toBe(0);
    model.active = true;
    await sleep(50);
    expect(f.calls.length).toBe(1);
    expect(model.status?.user).toBe('alice');
    expect(Math.round(model.clockSkew)).toBe(60);
    await sleep(230);
    expect(f.calls.length).toBeGreaterThanOrEqual(2);
    expect(changes).toBe(f.calls.length);
    model.active = false;
    await sleep(150);
    const n = f.calls.length;
    await sleep(300);
    expect(f.calls.length).toBe(n);
  });

  it('reports a failure, keeps the last answer, backs off, and clears the failure when it works again', async () => {
    const f = fakeFetch();
    const model = make({ fetch: f.fetch, interval: 50, maxInterval: 10000 });
    model.active = true;
    await sleep(20);
    expect(model.error).toBeNull();
    f.setFail('502: Bad Gateway');
    await model.refresh();
    await sleep(20);
    expect(model.error).toBe('502: Bad Gateway');
    expect(model.status?.user).toBe('alice');
    // backs off: each wait after a failure is longer (up to 3x, at random); every 50 ms would be 16
    const failedAt = f.calls.length;
    await sleep(800);
    expect(f.calls.length - failedAt).toBeGreaterThanOrEqual(1);
    expect(f.calls.length - failedAt).toBeLessThanOrEqual(10);
    expect(model.error).toBe('502: Bad Gateway');
    f.setFail(null);
    await model.refresh();
    await sleep(20);
    expect(model.error).toBeNull();
  });

  it('runs actions: a failure is labelled and shown until the next one works; each polls after', async () => {
    const f = fakeFetch();
    const model = make({ fetch: f.fetch, interval: 10000 });
    model.active = true;
    await sleep(20);
    const before = f.calls.length;
    await model.act('extend', () => Promise.reject(new Error('409: no')));
    await sleep(20);
    expect(model.actionError).toBe('extend: 409: no');
    expect(f.calls.length).toBe(before + 1);
    await model.act('share', () => Promise.resolve());
    expect(model.actionError).toBeNull();
    model.interval = 2000;
    expect(model.interval).toBe(2000);
  });

  it('primes once without polling (time-left notices with the panel closed)', async () => {
    const f = fakeFetch();
    const model = make({ fetch: f.fetch, interval: 50 });
    await model.prime();
    await sleep(150);
    expect(f.calls.length).toBe(1);
    expect(model.status).not.toBeNull();
  });
});
