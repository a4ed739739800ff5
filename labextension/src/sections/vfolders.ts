/** What the "vfolders" section shows: the user's vfolders, invitations, uploads (pure; the view renders it). */
import { formatBytes, formatPercent, usageOf } from '../format';
import { IVfolder, IVfolders } from '../status';
import type { IUploadRecord } from '../uploads';

export interface IVfolderRow {
  id: string;
  name: string;
  access: string;
  /** " from OWNER" for a vfolder shared with the user; '' for their own */
  from: string;
  mount: string;
  usage: string;
  fraction: number | null;
}

export interface IInvitationRow {
  id: string;
  text: string;
}

export type VfoldersContent =
  | { kind: 'error'; message: string }
  | {
      kind: 'vfolders';
      /** all the user's vfolders against their quota (null: no quota reading) */
      total: { text: string; fraction: number | null } | null;
      empty: string | null;
      items: IVfolderRow[];
      invitations: IInvitationRow[];
      invitationsError: string | null;
    };

export function vfoldersContent(v: IVfolders, user: string): VfoldersContent {
  if (v.error) {
    return { kind: 'error', message: v.error };
  }
  const items = v.items ?? [];
  const total = v.quota && v.quota.usage ? usageOf(v.quota.usage.bytes, v.quota.bytes) : null;
  return {
    kind: 'vfolders',
    total,
    empty: items.length ? null : 'No vfolders yet: create one below.',
    items: items.map(vf => {
      const here = vf.here || {};
      const u = usageOf(vf.usage?.bytes, vf.quota?.bytes);
      return {
        id: vf.id,
        name: vf.name,
        access: vf.access,
        from: vf.owner !== user ? ` from ${vf.owner}` : '',
        mount: here.mounted
          ? `${here.path} (${here.mode})`
          : here.live === false
            ? `not mounted here: restart your server to mount it at ${here.path}`
            : `not mounted here (${here.path})`,
        usage: u.text + (vf.over_quota ? ' — over quota' : ''),
        fraction: u.fraction
      };
    }),
    invitations: (v.invitations ?? []).map(i => ({
      id: i.id,
      text: `${i.vfolder_name ?? i.name ?? i.vfolder ?? 'vfolder'} from ${i.owner ?? i.from ?? '?'} (${i.permission})`
    })),
    invitationsError: v.invitations_error ?? null
  };
}

/** The vfolders the user may share (owner or admin). */
export function shareable(items: IVfolder[]): IVfolder[] {
  // a home vfolder is never shared (the service refuses it)
  return items.filter(v => (v.access === 'owner' || v.access === 'admin') && v.kind !== 'home');
}

/** The vfolders the user may upload into (writable and ready). */
export function uploadable(items: IVfolder[]): IVfolder[] {
  return items.filter(v => v.access !== 'ro' && v.state === 'ready');
}

/** The uploads to list: those not done, and the last one done. */
export function shownUploads(all: IUploadRecord[]): IUploadRecord[] {
  return all.filter(r => r.state !== 'done').concat(all.filter(r => r.state === 'done').slice(0, 1));
}

export interface IUploadLine {
  /** 'uploading' | 'done' | 'error' | 'interrupted' (uploading, but not in this page) */
  state: string;
  status: string;
  detail: string;
  resumed: string | null;
  /** whether it can be dismissed (not running in this page) */
  dismissable: boolean;
}

/** An upload's line; `live`: it runs in this page (else an uploading record was interrupted by a reload). */
export function uploadLine(r: IUploadRecord, live: boolean): IUploadLine {
  const f = r.size ? r.sent / r.size : 1;
  const state = r.state === 'uploading' && !live ? 'interrupted' : r.state;
  const status =
    state === 'done'
      ? 'done'
      : state === 'error'
        ? `failed: ${r.error}`
        : state === 'uploading'
          ? formatPercent(f * 100)
          : `interrupted at ${formatPercent(f * 100)}: choose ${r.name} again to resume`;
  return {
    state,
    status,
    detail: ` → ${r.vfolderName} · ${formatBytes(r.sent)} of ${formatBytes(r.size)} · `,
    resumed: r.resumedFrom !== undefined ? `resumed at ${formatBytes(r.resumedFrom)}` : null,
    dismissable: !live
  };
}
