import type { syncPb } from '@ptw/proto';

export type Applied = syncPb.Applied;
export type Conflict = syncPb.Conflict;
export type Rejected = syncPb.Rejected;

/** Reasons a change is rejected: it can never succeed as sent (SPEC §5, plus permission_denied). */
export type RejectReason =
  'validation_error' | 'missing_server_id' | 'permit_not_found' | 'isolation_point_not_found' | 'project_scope_violation' | 'unsupported_entity' | 'permission_denied';

/** Reasons a change conflicts: nothing was written, the client can merge and resend. */
export type ConflictReason = 'stale_version' | 'missing_client_version' | 'workflow_error';

export type MergeHint = 'last_write_wins' | 'set_merge' | 'true_wins' | 'manual';

/** The outcome of one change: exactly one of applied, conflict or rejected. */
export type Outcome =
  { kind: 'applied'; value: Applied; projectId?: string } | { kind: 'conflict'; value: Conflict; projectId?: string } | { kind: 'rejected'; value: Rejected; projectId?: string };

/** The merge hint of SPEC §5 for a field of a change. */
export function mergeHint(entity: string, field: string): MergeHint {
  if (['title', 'description', 'location', 'control_measures', 'remarks', 'notes'].includes(field)) return 'last_write_wins';
  if (field === 'ppe_requirements' || field === 'lock_ids') return 'set_merge';
  if (field === 'safety_checklist' || (entity === 'closeout' && field.startsWith('checklist'))) return 'true_wins';
  return 'manual';
}
