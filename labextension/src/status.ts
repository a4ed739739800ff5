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

export interface IStatus {
  user: string;
  now: number;
  share: IShare;
  live: ILive;
  quotas: IList<IQuotaItem> & { groups?: string[] };
  queue: IList<IQueueItem> & { waiting?: number };
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
