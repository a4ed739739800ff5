/** What the "Storage" section shows: each storage host's space and throughput (pure; the view renders it). */
import { formatBytes, formatRate } from '../format';
import { IFailed, IStorageHost } from '../status';

export interface IHostRow {
  name: string;
  error: string | null;
  usedFree: string;
  fraction: number | null;
  read: string;
  readHistory: number[];
  write: string;
  writeHistory: number[];
  written: string;
  /** the exact bytes written in total (the figure shown is rounded) */
  writtenBytes: number | null;
}

export type StorageContent =
  | { kind: 'error'; message: string }
  | { kind: 'empty'; text: string }
  | { kind: 'hosts'; hosts: IHostRow[] };

export function storageContent(storage: IFailed & { hosts?: IStorageHost[] }): StorageContent {
  if (storage.error) {
    return { kind: 'error', message: storage.error };
  }
  const hosts = storage.hosts ?? [];
  if (!hosts.length) {
    return { kind: 'empty', text: 'No storage hosts.' };
  }
  return {
    kind: 'hosts',
    hosts: hosts.map(h => {
      const hist = h.history || [];
      return {
        name: h.name,
        error: h.error ?? null,
        // how full: the vfolder service's used_percent (df's Use%), as the admin page shows it
        usedFree:
          `${formatBytes(h.used_bytes)} / ${formatBytes(h.free_bytes)}` +
          (h.used_percent !== null && h.used_percent !== undefined ? ` (${Math.round(h.used_percent)}%)` : ''),
        fraction: h.used_percent !== null && h.used_percent !== undefined ? h.used_percent / 100 : null,
        read: formatRate(h.io_bytes_read),
        readHistory: hist.map(p => p[1]),
        write: formatRate(h.io_bytes_write),
        writeHistory: hist.map(p => p[2]),
        written: formatBytes(h.write_bytes),
        writtenBytes: h.write_bytes ?? null
      };
    })
  };
}
