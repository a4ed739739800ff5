/**
 * What the "Jobs" section shows (the user's newest batch jobs), and the job a
 * *Run as job* submits for a notebook (pure; the view and the dialog use them).
 */
import { formatDuration } from '../format';
import { IJob, IList, IShare } from '../status';
import { ListContent, listContent } from './list';

/**
 * The shell line of a notebook job: nbconvert executes the notebook ("$1",
 * relative to the home) and writes the executed copy, under the notebook's own
 * name, next to the job's log in ~/jobs/ID/ (the runner sets GPUHUB_JOB_ID).
 * gpuhub/lab/handlers.py (notebook_of) recognises jobs by this shape.
 */
export const NOTEBOOK_SCRIPT =
  'exec jupyter nbconvert --to notebook --execute "$HOME/$1" --output-dir "$HOME/jobs/$GPUHUB_JOB_ID"';

/** What POST gpuhub/jobs takes (the allocator's POST jobs). */
export interface IJobRequest {
  command: string[];
  workdir: string;
  gpus: string;
  max_hours?: number;
}

/** The directory of a path relative to the home ('' for the home itself). */
export function dirOf(path: string): string {
  const i = path.lastIndexOf('/');
  return i < 0 ? '' : path.slice(0, i);
}

/** The last part of a path. */
export function baseName(path: string): string {
  return path.slice(path.lastIndexOf('/') + 1);
}

/**
 * The job that runs `path` (a notebook, relative to the home, as the file
 * browser names it) with `gpus` for at most `maxHours` (null: the hub's
 * default), in the notebook's directory so that its relative paths work. The
 * path is an argument of its own, so spaces and quotes in it are safe.
 */
export function notebookJob(path: string, gpus: string, maxHours: number | null): IJobRequest {
  const clean = path.replace(/^\/+/, '');
  const job: IJobRequest = {
    command: ['sh', '-c', NOTEBOOK_SCRIPT, 'sh', clean],
    workdir: dirOf(clean),
    gpus: gpus.trim() || '0'
  };
  if (maxHours !== null && isFinite(maxHours) && maxHours > 0) {
    job.max_hours = maxHours;
  }
  return job;
}

/** The dialog's GPU amount: this session's own share (none: 0). */
export function sessionGpus(share: IShare | null | undefined): string {
  if (!share || share.error) {
    return '0';
  }
  return share.allocation?.gpus ?? share.env?.GPUHUB_GPUS ?? '0';
}

export interface IJobRow {
  id: string;
  state: string;
  /** what it runs: the notebook's name, else the command */
  name: string;
  /** the whole of it (a tooltip): the notebook's path or the command */
  title: string;
  /** "exit 0 · 0.5 GPU · took 12m 03s", "position 2 · starts in about 5m 00s · 1 GPU" */
  detail: string;
  reason: string;
  cancellable: boolean;
  /** the executed notebook to open (under the server's root); null: none (yet) */
  output: string | null;
}

function detail(j: IJob, now: number): string {
  const parts: string[] = [];
  if (j.state === 'queued') {
    if (j.position) {
      parts.push(`position ${j.position}`);
    }
    if (j.eta) {
      parts.push(j.eta <= now ? 'starts soon' : `starts in about ${formatDuration(j.eta - now)}`);
    }
  }
  if (j.exit_code !== null && j.exit_code !== undefined) {
    parts.push(`exit ${j.exit_code}`);
  }
  if (j.gpus !== null && j.gpus !== undefined && j.gpus !== '') {
    parts.push(`${j.gpus} GPU`);
  }
  if (j.started) {
    const took = (j.ended ?? now) - j.started;
    const text = took >= 1 ? formatDuration(took) : '0s';
    parts.push(j.ended ? `took ${text}` : `${text} so far`);
  }
  return parts.join(' · ');
}

export function jobsContent(data: IList<IJob> | undefined, now: number): ListContent<IJobRow> {
  if (!data || data.available === false) {
    return { kind: 'empty', text: 'Batch jobs are not available here.' };
  }
  return listContent(data, 'No jobs yet: right-click a notebook, "Run as job…".', j => ({
    id: j.id,
    state: j.state,
    name: j.notebook ? baseName(j.notebook) : j.command,
    title: j.notebook ? `~/${j.notebook}` : j.command,
    detail: detail(j, now),
    reason: j.state === 'failed' || j.state === 'expired' || j.state === 'cancelled' ? j.reason : '',
    cancellable: j.state === 'queued' || j.state === 'running',
    output: j.output
  }));
}
