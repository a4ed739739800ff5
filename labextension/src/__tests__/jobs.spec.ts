/** The "Jobs" section and the job a *Run as job* submits (sections/jobs.ts). */
import { jobsContent, NOTEBOOK_SCRIPT, notebookJob, sessionGpus } from '../sections/jobs';
import { IJob, IShare } from '../status';

const job = (patch: Partial<IJob> = {}): IJob => ({
  id: '0123456789ab',
  state: 'succeeded',
  exit_code: 0,
  reason: '',
  submitted: 100,
  started: 110,
  ended: 152,
  gpus: '0.5',
  command: 'sh -c … sh my work/nb one.ipynb',
  notebook: 'my work/nb one.ipynb',
  output: 'jobs/0123456789ab/nb one.ipynb',
  ...patch
});

describe('notebookJob', () => {
  it('runs nbconvert on the notebook as an argument of its own, in its directory', () => {
    const j = notebookJob('my work/nb "one".ipynb', '0.5', 2);
    expect(j).toEqual({
      command: ['sh', '-c', NOTEBOOK_SCRIPT, 'sh', 'my work/nb "one".ipynb'],
      workdir: 'my work',
      gpus: '0.5',
      max_hours: 2
    });
    // the executed copy goes next to the job's log; the notebook is found from the home
    expect(NOTEBOOK_SCRIPT).toContain('--output-dir "$HOME/jobs/$GPUHUB_JOB_ID"');
    expect(NOTEBOOK_SCRIPT).toContain('--execute "$HOME/$1"');
  });

  it('a notebook in the home: no workdir; no hours: the hub default; no GPUs: 0', () => {
    expect(notebookJob('/a.ipynb', ' ', null)).toEqual({
      command: ['sh', '-c', NOTEBOOK_SCRIPT, 'sh', 'a.ipynb'],
      workdir: '',
      gpus: '0'
    });
    expect(notebookJob('a.ipynb', '1', 0).max_hours).toBeUndefined();
    expect(notebookJob('a.ipynb', '1', NaN).max_hours).toBeUndefined();
  });

  it("defaults to the session's own share", () => {
    const share = { allocation: { gpus: '0.25' }, env: { GPUHUB_GPUS: '0.5' } } as unknown as IShare;
    expect(sessionGpus(share)).toBe('0.25');
    expect(sessionGpus({ ...share, allocation: null })).toBe('0.5');
    expect(sessionGpus({ ...share, allocation: null, env: {} })).toBe('0');
    expect(sessionGpus({ error: 'down' } as IShare)).toBe('0');
    expect(sessionGpus(undefined)).toBe('0');
  });
});

describe('jobsContent', () => {
  it('a finished notebook job: its name, exit code, run time, the result to open, no Cancel', () => {
    const c = jobsContent({ available: true, items: [job()] }, 200);
    expect(c).toEqual({
      kind: 'items',
      items: [
        {
          id: '0123456789ab',
          state: 'succeeded',
          name: 'nb one.ipynb',
          title: '~/my work/nb one.ipynb',
          detail: 'exit 0 · 0.5 GPU · took 42s',
          reason: '',
          cancellable: false,
          output: 'jobs/0123456789ab/nb one.ipynb'
        }
      ]
    });
  });

  it('queued and running: Cancel, the position and time so far; failed: the reason', () => {
    const c = jobsContent(
      {
        available: true,
        items: [
          job({ state: 'queued', exit_code: null, started: null, ended: null, output: null, position: 2, eta: 500 }),
          job({ state: 'running', exit_code: null, ended: null, output: null, gpus: null }),
          job({ state: 'failed', exit_code: 3, reason: 'the command exited with 3', notebook: null, command: 'python x.py' })
        ]
      },
      200
    );
    if (c.kind !== 'items') {
      throw new Error(c.kind);
    }
    const [queued, running, failed] = c.items;
    expect([queued.cancellable, queued.detail]).toEqual([true, 'position 2 · starts in about 5m 00s · 0.5 GPU']);
    expect([running.cancellable, running.detail]).toEqual([true, '1m 30s so far']);
    expect([failed.name, failed.reason, failed.cancellable]).toEqual(['python x.py', 'the command exited with 3', false]);
  });

  it('empty, failed, or an allocator without jobs', () => {
    expect(jobsContent({ available: true, items: [] }, 0).kind).toBe('empty');
    expect(jobsContent({ error: 'allocator: down' }, 0)).toEqual({ kind: 'error', message: 'allocator: down' });
    expect(jobsContent({ available: false, items: [] }, 0)).toEqual({
      kind: 'empty',
      text: 'Batch jobs are not available here.'
    });
    expect(jobsContent(undefined, 0).kind).toBe('empty');
  });
});
