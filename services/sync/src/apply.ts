/**
 * Applies one offline change with the same rules as the HTTP API (@ptw/domain), and classifies
 * the result as applied, conflict or rejected (SPEC §5). Nothing here throws for bad input.
 */
import { AppError, inScope, Status, type Principal } from '@ptw/common';
import type { Models } from '@ptw/db';
import * as d from '@ptw/domain';
import type { syncPb } from '@ptw/proto';
import { isValidObjectId } from 'mongoose';
import { mergeHint, type ConflictReason, type Outcome, type RejectReason } from './outcomes';

const SUPPORTED = new Set(['permit/create', 'permit/update', 'permit/update_status', 'isolation_point/update', 'closeout/update']);

const isHexId = (id: string | undefined): id is string => !!id && isValidObjectId(id) && /^[0-9a-f]{24}$/i.test(id);

function rejected(c: syncPb.Change, reason: RejectReason, detail: string, projectId?: string): Outcome {
  return { kind: 'rejected', projectId, value: { entity: c.entity, offline_id: c.offline_id, server_id: c.server_id, reason, detail } };
}

function conflicted(c: syncPb.Change, reason: ConflictReason, serverVersion: number, serverState: object, fields: Record<string, unknown>, projectId?: string): Outcome {
  return {
    kind: 'conflict',
    projectId,
    value: {
      entity: c.entity,
      offline_id: c.offline_id,
      server_id: c.server_id ?? '',
      reason,
      client_version: c.client_version,
      server_version: serverVersion,
      fields,
      server_state: JSON.parse(JSON.stringify(serverState)) as Record<string, unknown>,
      truncated: false,
    },
  };
}

function applied(c: syncPb.Change, serverId: string, newVersion: number, projectId?: string): Outcome {
  return { kind: 'applied', projectId, value: { entity: c.entity, offline_id: c.offline_id, server_id: serverId, new_version: newVersion, status: 'applied' } };
}

/** JSON-comparable form of a value (dates as ISO strings, keys sorted). */
function norm(v: unknown): unknown {
  if (v instanceof Date) return v.toISOString();
  if (Array.isArray(v)) return v.map(norm);
  if (v && typeof v === 'object')
    return Object.fromEntries(
      Object.keys(v)
        .sort()
        .map((k) => [k, norm((v as Record<string, unknown>)[k])]),
    );
  if (typeof v === 'string' && /^\d{4}-\d{2}-\d{2}T/.test(v) && !Number.isNaN(Date.parse(v))) return new Date(v).toISOString();
  return v ?? null;
}

const same = (a: unknown, b: unknown) => JSON.stringify(norm(a)) === JSON.stringify(norm(b));

/** The permit fields a change may name, the only ones a conflict ever shows (SPEC §4: only public fields leave the system). */
const PUBLIC_PERMIT_FIELDS = new Set([...Object.keys(d.permitFieldsSchema.shape), 'status']);

/**
 * Per-field diff of what the client sent against the server's values, with merge hints. For a
 * permit only its public fields are compared: a change naming an internal one (`_id`, `sync_origin`…)
 * learns nothing of it.
 */
function fieldDiff(entity: string, sent: Record<string, unknown>, server: Record<string, unknown>) {
  const fields: Record<string, { client: unknown; server: unknown; merge_hint: string }> = {};
  for (const [k, v] of Object.entries(sent)) {
    if (entity === 'permit' && !PUBLIC_PERMIT_FIELDS.has(k)) continue;
    if (!same(v, server[k])) fields[k] = { client: norm(v), server: norm(server[k]), merge_hint: mergeHint(entity, k) };
  }
  return fields;
}

/** A permit's state as a conflict shows it: its id, version and status, and the public fields the change named. */
function namedState(state: object, sent: Record<string, unknown>): object {
  const keep = new Set(['id', 'version', 'status', ...Object.keys(sent).filter((k) => PUBLIC_PERMIT_FIELDS.has(k))]);
  return Object.fromEntries(Object.entries(state).filter(([k]) => keep.has(k)));
}

/** Maps a domain error to the outcome SPEC §5 names for it. */
function fromError(c: syncPb.Change, err: unknown, notFoundReason: RejectReason, projectId?: string, state?: { version: number; state: object }): Outcome {
  if (!(err instanceof AppError)) throw err;
  switch (err.code) {
    case Status.INVALID_ARGUMENT:
      return rejected(c, 'validation_error', err.message, projectId);
    case Status.NOT_FOUND:
      return rejected(c, notFoundReason, notFoundReason === 'permit_not_found' ? 'Permit not found' : 'Isolation point not found', projectId);
    case Status.PERMISSION_DENIED:
      return rejected(c, 'permission_denied', err.message, projectId);
    case Status.FAILED_PRECONDITION:
      return conflicted(c, 'workflow_error', state?.version ?? 0, state?.state ?? {}, { _error: { client: null, server: err.message, merge_hint: 'manual' } }, projectId);
    case Status.ABORTED: {
      const details = (err.details ?? {}) as { server_version?: number; server_state?: object };
      return conflicted(c, 'stale_version', details.server_version ?? state?.version ?? 0, details.server_state ?? state?.state ?? {}, {}, projectId);
    }
    default:
      throw err;
  }
}

/** Loads a permit the caller may see, or undefined (unknown, malformed id, other project alike). */
async function visiblePermit(models: Models, who: Principal, id: string | undefined) {
  if (!isHexId(id)) return undefined;
  const doc = await models.Permit.findById(id).lean();
  return doc && inScope(who, doc.project_id) ? doc : undefined;
}

/** A change no store state can make applicable: refused before anything is read or written. */
export function unsupported(c: syncPb.Change): Outcome | undefined {
  if (!SUPPORTED.has(`${c.entity}/${c.op}`)) return rejected(c, 'unsupported_entity', `Unsupported entity/op ${String(c.entity).slice(0, 40)}/${String(c.op).slice(0, 40)}`);
  return undefined;
}

export const isCreate = (c: syncPb.Change) => c.entity === 'permit' && c.op === 'create';

/**
 * The checks of a permit create that need no store: the rejected outcome, or the data and project
 * to hand to the bulk create.
 */
export function prepareCreate(who: Principal, c: syncPb.Change): { data: Record<string, unknown>; projectId?: string } | { outcome: Outcome } {
  if (c.invalid_reason) return { outcome: rejected(c, 'validation_error', c.invalid_reason) };
  const data = (c.data ?? {}) as Record<string, unknown>;
  const projectId = typeof data.project_id === 'string' ? data.project_id : who.project_ids.length === 1 ? who.project_ids[0] : undefined;
  if (projectId && !inScope(who, projectId)) return { outcome: rejected(c, 'project_scope_violation', 'project_id: you are not a member of this project') };
  return { data, projectId };
}

/** The outcome of one permit create of a bulk create. */
export function createOutcome(c: syncPb.Change, r: d.BulkCreateResult, projectId?: string): Outcome {
  return r.ok ? applied(c, r.id, r.version, r.project_id) : fromError(c, r.error, 'permit_not_found', projectId);
}

/** Applies one change that is not a permit create for `who`. */
export async function applyChange(models: Models, who: Principal, c: syncPb.Change): Promise<Outcome> {
  if (c.invalid_reason) return rejected(c, 'validation_error', c.invalid_reason);
  const refused = unsupported(c);
  if (refused) return refused;
  const data = (c.data ?? {}) as Record<string, unknown>;

  if (!c.server_id) return rejected(c, 'missing_server_id', 'server_id is required for this change');

  if (c.entity === 'permit') {
    const permit = await visiblePermit(models, who, c.server_id);
    if (!permit) return rejected(c, 'permit_not_found', 'Permit not found');
    const state = { version: permit.version, state: d.toPermitMessage(permit) };
    const sent = c.op === 'update_status' ? { status: data.status } : data;
    if (c.client_version === undefined) return conflicted(c, 'missing_client_version', permit.version, namedState(state.state, sent), fieldDiff('permit', sent, permit), permit.project_id);
    if (c.client_version !== permit.version) {
      const fields = fieldDiff('permit', sent, permit);
      if (Object.keys(fields).length === 0) return applied(c, c.server_id, permit.version, permit.project_id);
      return conflicted(c, 'stale_version', permit.version, namedState(state.state, sent), fields, permit.project_id);
    }
    try {
      if (c.op === 'update') {
        // The permit just read is the one edited: no second read (the write is guarded by its version).
        const p = await d.updatePermit(models, who, c.server_id, c.client_version, data, new Date(), permit);
        return applied(c, c.server_id, p.version, p.project_id);
      }
      const extra = Object.keys(data).filter((k) => k !== 'status' && k !== 'comments');
      if (typeof data.status !== 'string' || extra.length) return rejected(c, 'validation_error', extra.length ? `${extra[0]}: unknown field` : 'status: required', permit.project_id);
      if (data.status === permit.status) return applied(c, c.server_id, permit.version, permit.project_id);
      const comments = typeof data.comments === 'string' ? data.comments : '';
      const p = await d.transitionPermit(models, who, c.server_id, data.status, comments);
      return applied(c, c.server_id, p.version, p.project_id);
    } catch (err) {
      return fromError(c, err, 'permit_not_found', permit.project_id, state);
    }
  }

  if (c.entity === 'isolation_point') {
    const point = isHexId(c.server_id) ? await models.IsolationPoint.findById(c.server_id).lean() : null;
    if (!point || !inScope(who, point.project_id)) return rejected(c, 'isolation_point_not_found', 'Isolation point not found');
    const state = { version: point.version, state: d.toIsolationMessage(point) };
    const target = data.status;
    const actions: Record<string, d.IsolationAction> = { isolated: 'isolate', verified: 'verify', deisolated: 'deisolate' };
    const extra = Object.keys(data).filter((k) => !['status', 'lock_ids', 'notes'].includes(k));
    if (typeof target !== 'string' || !(target in actions) || extra.length) {
      return rejected(c, 'validation_error', extra.length ? `${extra[0]}: unknown field` : 'status: expected isolated, verified or deisolated', point.project_id);
    }
    const order = d.ISOLATION_ORDER as readonly string[];
    const sentLocks = Array.isArray(data.lock_ids) ? (data.lock_ids as unknown[]) : [];
    const alreadyThere = point.status === target && sentLocks.every((l) => (point.lock_ids ?? []).includes(l as string));
    if (alreadyThere) return applied(c, c.server_id, point.version, point.project_id);
    if (order.indexOf(point.status) >= order.indexOf(target)) {
      // Isolation status never regresses: the server is already at or past what the client asks.
      const fields = { status: { client: target, server: point.status, merge_hint: 'manual', detail: `server already at ${point.status}` } };
      return conflicted(c, 'stale_version', point.version, state.state, fields, point.project_id);
    }
    if (c.client_version === undefined) return conflicted(c, 'missing_client_version', point.version, state.state, {}, point.project_id);
    try {
      const updated = await d.updateIsolation(
        models,
        who,
        point.permit_id,
        { point_id: c.server_id, action: actions[target], lock_ids: sentLocks as string[], notes: data.notes as string | undefined },
        new Date(),
        c.client_version,
      );
      return applied(c, c.server_id, updated.version, point.project_id);
    } catch (err) {
      return fromError(c, err, 'isolation_point_not_found', point.project_id, state);
    }
  }

  // closeout/update: server_id is the permit's id (one closeout per permit).
  const permit = await visiblePermit(models, who, c.server_id);
  if (!permit) return rejected(c, 'permit_not_found', 'Permit not found');
  try {
    const current = await d.getCloseout(models, who, c.server_id);
    const serverFlat: Record<string, unknown> = { remarks: current.remarks };
    const sentFlat: Record<string, unknown> = {};
    if (data.remarks !== undefined) sentFlat.remarks = data.remarks;
    const checklist = (data.checklist && typeof data.checklist === 'object' ? data.checklist : {}) as Record<string, { done?: unknown; comments?: unknown }>;
    for (const [k, v] of Object.entries(checklist)) {
      const s = current.checklist[k];
      if (v && typeof v === 'object' && v.done !== undefined) {
        sentFlat[`checklist.${k}.done`] = v.done;
        serverFlat[`checklist.${k}.done`] = s?.done;
      }
      if (v && typeof v === 'object' && v.comments !== undefined) {
        sentFlat[`checklist.${k}.comments`] = v.comments;
        serverFlat[`checklist.${k}.comments`] = s?.comments;
      }
    }
    if (c.client_version === undefined) return conflicted(c, 'missing_client_version', current.version, current, fieldDiff('closeout', sentFlat, serverFlat), permit.project_id);
    if (c.client_version !== current.version) {
      const fields = fieldDiff('closeout', sentFlat, serverFlat);
      if (Object.keys(fields).length === 0) return applied(c, c.server_id, current.version, permit.project_id);
      return conflicted(c, 'stale_version', current.version, current, fields, permit.project_id);
    }
    const updated = await d.updateCloseout(models, who, c.server_id, data, { trueWins: true, expectedVersion: c.client_version });
    return applied(c, c.server_id, updated.version, permit.project_id);
  } catch (err) {
    return fromError(c, err, 'permit_not_found', permit.project_id, { version: permit.version, state: d.toPermitMessage(permit) });
  }
}
