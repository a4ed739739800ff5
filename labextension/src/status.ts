/**
 * What the server extension answers on GET gpuhub/status (gpuhub/lab/handlers.py),
 * and jupyter-resource-usage's metrics of this session: the model's state.
 */
import { IDevice, IQueueItem, IQuotaItem } from './format';

export interface IAllocation {
  id: string;
  state: string;
  host: string;
  gpus: string;
  cpu: string;
  mem: string;
  max_hours: number;
  created: number;
  devices: IDevice[];
}

/** A section the server could not fill: its service's error (`{"error": "…"}`). */
export interface IFailed {
  error?: string;
}

export interface IShare extends IFailed {
  allocation: IAllocation | null;
  env: Record<string, string>;
  ends_at: number | null;
  time_left_s: number | null;
  notice?: string | null;
  extend: { allowed: boolean; reason: string; hours?: number | null };
}

export interface ILive extends IFailed {
  source: string;
  label: string;
  utilization_gpu?: number;
  memory_used_mb?: number;
  memory_limit_mb?: number | null;
  history: number[][];
}

export interface IList<T> extends IFailed {
  available?: boolean;
  items?: T[];
}

export interface IVfolder {
  id: string;
  name: string;
  mount_name?: string;
  kind?: string;
  owner: string;
  access: string;
  state: string;
  usage?: { bytes?: number | null } | null;
  quota?: { bytes?: number | null } | null;
  over_quota?: boolean;
  here?: { path?: string; mounted?: boolean; mode?: string | null; live?: boolean };
}

export interface IInvitation {
  id: string;
  vfolder?: string;
  vfolder_name?: string;
  name?: string;
  owner?: string;
  from?: string;
  permission?: string;
}

export interface IVfolders extends IFailed {
  items?: IVfolder[];
  invitations?: IInvitation[];
  invitations_error?: string | null;
  quota?: { bytes?: number | null; usage?: { bytes?: number | null } } | null;
}

export interface IStorageHost {
  name: string;
  error?: string;
  capacity_bytes?: number | null;
  used_bytes?: number | null;
  /** how full, as df says it (the vfolder service's one definition, as on the admin page) */
  used_percent?: number | null;
  free_bytes?: number | null;
  write_bytes?: number | null;
  io_bytes_read?: number | null;
  io_bytes_write?: number | null;
  history?: number[][];
}

/** One of the user's batch jobs, as the status lists them (gpuhub/lab/handlers.py jobs_view). */
export interface IJob {
  id: string;
  state: string;
  exit_code: number | null;
  reason: string;
  submitted: number | null;
  started: number | null;
  ended: number | null;
  gpus?: string | null;
  command: string;
  /** the notebook a *Run as job* executes (relative to the home); null: another command */
  notebook: string | null;
  /** the executed notebook under the server's root, once it exists */
  output: string | null;
  position?: number | null;
  eta?: number | null;
}

export interface IStatus {
  user: string;
  now: number;
  share: IShare;
  live: ILive;
  quotas: IList<IQuotaItem> & { groups?: string[] };
  queue: IList<IQueueItem> & { waiting?: number };
  /** missing: a server extension from before jobs */
  jobs?: IList<IJob>;
  vfolders: IVfolders;
  storage: IFailed & { hosts?: IStorageHost[] };
}

/** jupyter-resource-usage's metrics of this session (its processes' CPU and memory). */
export interface IMetrics {
  rss: number;
  limits?: { memory?: { rss?: number } };
  cpu_percent?: number;
  cpu_count?: number;
}
