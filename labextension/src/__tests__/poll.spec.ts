import { Poller } from '../poll';

/** Fake timers: run() fires the pending timeout. */
function fakeTimers() {
  const pending = new Map<number, { fn: () => void; ms: number }>();
  let next = 1;
  return {
    pending,
    setTimeout: (fn: () => void, ms: number) => {
      pending.set(next, { fn, ms });
      return next++;
    },
    clearTimeout: (h: number) => {
      pending.delete(h);
    },
    async fire() {
      const [[h, t]] = Array.from(pending.entries());
      pending.delete(h);
      t.fn();
      await flush();
    }
  };
}

const flush = () => new Promise(r => setImmediate(r));

describe('Poller', () => {
  it('polls only while visible', async () => {
    const timers = fakeTimers();
    let calls = 0;
    const data: number[] = [];
    const p = new Poller<number>({
      fetch: async () => ++calls,
      onData: d => data.push(d),
      onError: () => undefined,
      interval: 5000,
      setTimeout: timers.setTimeout,
      clearTimeout: timers.clearTimeout
    });
    await flush();
    expect(calls).toBe(0); // hidden: nothing
    p.setVisible(true);
    await flush();
    expect(calls).toBe(1);
    expect(timers.pending.size).toBe(1);
    expect(Array.from(timers.pending.values())[0].ms).toBe(5000);
    await timers.fire();
    expect(calls).toBe(2);
    p.setVisible(false);
    expect(timers.pending.size).toBe(0); // hidden: no next poll
    p.setVisible(true);
    await flush();
    expect(calls).toBe(3);
    expect(data).toEqual([1, 2, 3]);
    p.dispose();
    expect(timers.pending.size).toBe(0);
  });

  it('reports errors to the panel, backs off, and clears the error on recovery', async () => {
    const timers = fakeTimers();
    let fail = true;
    const errors: (string | null)[] = [];
    const p = new Poller<string>({
      fetch: async () => {
        if (fail) {
          throw new Error('allocator: unreachable');
        }
        return 'ok';
      },
      onData: () => undefined,
      onError: e => errors.push(e ? e.message : null),
      interval: 1000,
      maxInterval: 3000,
      setTimeout: timers.setTimeout,
      clearTimeout: timers.clearTimeout
    });
    const spy = jest.spyOn(console, 'error').mockImplementation(() => undefined);
    p.setVisible(true);
    await flush();
    expect(p.nextDelay).toBe(2000);
    await timers.fire();
    expect(p.nextDelay).toBe(3000); // capped
    fail = false;
    await timers.fire();
    expect(p.nextDelay).toBe(1000);
    expect(errors).toEqual(['allocator: unreachable', 'allocator: unreachable', null]);
    expect(spy).not.toHaveBeenCalled(); // no console noise
    spy.mockRestore();
    p.dispose();
  });

  it('never runs two fetches at once', async () => {
    let running = 0;
    let most = 0;
    let release: () => void = () => undefined;
    const p = new Poller<void>({
      fetch: () => {
        running++;
        most = Math.max(most, running);
        return new Promise<void>(r => {
          release = () => {
            running--;
            r();
          };
        });
      },
      onData: () => undefined,
      onError: () => undefined,
      setTimeout: () => 0,
      clearTimeout: () => undefined
    });
    p.setVisible(true);
    const again = p.refresh();
    release();
    await flush();
    release();
    await again;
    expect(most).toBe(1);
    p.dispose();
  });
});
