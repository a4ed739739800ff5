/**
 * Resumable uploads into a vfolder (tus 1.0 through the server extension, which
 * adds the session's hub token). tus-js-client keeps each upload's URL in
 * localStorage under a fingerprint of (vfolder, name, size, mtime); this module
 * keeps the progress records, so that after a page reload the panel still shows
 * the interrupted upload, and choosing the same file again resumes it where the
 * server's offset stands.
 */
import { PageConfig, URLExt } from '@jupyterlab/coreutils';
import * as tus from 'tus-js-client';
import { cookie } from './api';

const RECORDS = 'gpuhub:uploads';
const CHUNK_KEY = 'gpuhub:upload-chunk-bytes';
const DEFAULT_CHUNK = 4 * 1024 * 1024;

export interface IUploadRecord {
  key: string;
  vfolder: string;
  vfolderName: string;
  name: string;
  size: number;
  sent: number;
  state: 'uploading' | 'done' | 'error';
  resumedFrom?: number;
  error?: string;
  updated: number;
}

export function uploadKey(vfolder: string, file: { name: string; size: number; lastModified: number }): string {
  return ['gpuhub', vfolder, file.name, file.size, file.lastModified].join(':');
}

export function loadRecords(): IUploadRecord[] {
  try {
    const all = JSON.parse(localStorage.getItem(RECORDS) || '[]');
    return Array.isArray(all) ? all : [];
  } catch {
    return [];
  }
}

function saveRecord(r: IUploadRecord): void {
  const all = loadRecords().filter(x => x.key !== r.key);
  all.unshift(r);
  localStorage.setItem(RECORDS, JSON.stringify(all.slice(0, 10)));
}

export function forgetRecord(key: string): void {
  localStorage.setItem(RECORDS, JSON.stringify(loadRecords().filter(x => x.key !== key)));
}

/** Uploads interrupted by a reload (or an error): resumable when the file is chosen again. */
export function interrupted(): IUploadRecord[] {
  return loadRecords().filter(r => r.state !== 'done');
}

/**
 * Upload `file` into vfolder `vfolder`; resumes a previous upload of the same
 * file when the server still has it. `onChange` sees every progress step.
 */
export async function startUpload(
  file: File,
  vfolder: string,
  vfolderName: string,
  onChange: (r: IUploadRecord) => void
): Promise<tus.Upload> {
  const baseUrl = PageConfig.getBaseUrl();
  const key = uploadKey(vfolder, file);
  const headers: Record<string, string> = {};
  const xsrf = cookie('_xsrf');
  if (xsrf) {
    headers['X-XSRFToken'] = xsrf;
  }
  const token = PageConfig.getToken();
  if (token) {
    headers['Authorization'] = `token ${token}`;
  }
  const chunk = Number(localStorage.getItem(CHUNK_KEY)) || DEFAULT_CHUNK;
  const previousRecord = loadRecords().find(r => r.key === key);
  const record: IUploadRecord = {
    key,
    vfolder,
    vfolderName,
    name: file.name,
    size: file.size,
    sent: 0,
    state: 'uploading',
    updated: Date.now()
  };
  let firstChunk = true;
  const update = (patch: Partial<IUploadRecord>) => {
    Object.assign(record, patch, { updated: Date.now() });
    saveRecord(record);
    onChange({ ...record });
  };
  let resuming = false;
  const upload = new tus.Upload(file, {
    endpoint: URLExt.join(baseUrl, 'gpuhub/vfolders', vfolder, 'uploads/'),
    chunkSize: chunk,
    retryDelays: [0, 1000, 3000, 5000],
    metadata: { filename: file.name, filetype: file.type || 'application/octet-stream' },
    headers,
    storeFingerprintForResuming: true,
    removeFingerprintOnSuccess: true,
    fingerprint: async () => key,
    onProgress: (sent: number) => update({ sent }),
    onChunkComplete: (size: number, accepted: number) => {
      if (firstChunk && resuming) {
        // the first chunk after a resume started at the server's offset
        update({ resumedFrom: accepted - size });
      }
      firstChunk = false;
    },
    onSuccess: () => update({ sent: file.size, state: 'done' }),
    onError: (error: Error) => update({ state: 'error', error: String(error.message || error).slice(0, 300) })
  });
  const previous = await upload.findPreviousUploads();
  if (previous.length) {
    resuming = true;
    upload.resumeFromPreviousUpload(previous[0]);
  }
  update({ sent: resuming && previousRecord ? previousRecord.sent : 0 });
  upload.start();
  return upload;
}
