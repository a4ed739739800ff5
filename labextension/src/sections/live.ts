/** What the "Live use of this share" section shows (pure; the view renders it). */
import { formatBytes, formatMB, formatPercent } from '../format';
import { IAllocation, ILive, IMetrics } from '../status';

export interface IGpuUse {
  source: string;
  label: string;
  utilization: string;
  utilizationFraction: number;
  utilizationHistory: number[];
  memory: string;
  /** null: no limit known (no bar) */
  memoryFraction: number | null;
  memoryHistory: number[];
  memoryMax: number | undefined;
}

export interface ISessionUse {
  cpu: string;
  memory: string;
  memoryFraction: number | null;
}

export interface ILiveContent {
  error: string | null;
  gpu: IGpuUse | null;
  /** why there are no GPU readings (when there is no error to say so) */
  message: string | null;
  /** this session's processes, from jupyter-resource-usage */
  session: ISessionUse | null;
}

export function liveContent(live: ILive, allocation: IAllocation | null, metrics: IMetrics | null): ILiveContent {
  let gpu: IGpuUse | null = null;
  if (live.utilization_gpu !== undefined) {
    const limit = live.memory_limit_mb ?? null;
    const hist = live.history || [];
    gpu = {
      source: live.source,
      label: live.label,
      utilization: formatPercent(live.utilization_gpu),
      utilizationFraction: (live.utilization_gpu ?? 0) / 100,
      utilizationHistory: hist.map(p => p[1]),
      memory: `${formatMB(live.memory_used_mb)} of ${limit ? formatMB(limit) : '–'} (share)`,
      memoryFraction: limit ? (live.memory_used_mb ?? 0) / limit : null,
      memoryHistory: hist.map(p => p[2]),
      memoryMax: limit ?? undefined
    };
  }
  return {
    error: live.error ?? null,
    gpu,
    message: gpu === null && !live.error ? live.label : null,
    session: metrics ? sessionUse(metrics, allocation) : null
  };
}

/** The session's CPU (of the share's cores) and memory (of the share's memory, else the server's limit). */
export function sessionUse(m: IMetrics, allocation: IAllocation | null): ISessionUse {
  const memLimit = allocation ? parseInt(allocation.mem, 10) * 1024 * 1024 : m.limits?.memory?.rss;
  return {
    cpu:
      m.cpu_percent !== undefined
        ? `${m.cpu_percent.toFixed(0)}%${allocation ? ` of ${allocation.cpu} cores` : ''}`
        : '–',
    memory: `${formatBytes(m.rss)}${memLimit ? ` of ${formatBytes(memLimit)}` : ''}`,
    memoryFraction: memLimit ? m.rss / memLimit : null
  };
}
