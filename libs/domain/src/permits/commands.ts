/** Permit writes: create, edit and status transitions, each audited. */
import { conflict, failedPrecondition, hasRole, inScope, invalidArgument, permissionDenied, storableIssue, type Principal } from '@ptw/common';
import { PERMIT_STATUSES, type Models, type PermitStatus } from '@ptw/db';
import { checkTimes, permitDraft } from '../bulk';
import { activeTypeIds } from '../permit-types';
import { parseInput, updatePermitSchema } from '../input';
import { isAllowedTransition, risk, STAMPS, TERMINAL, transitionRefusal } from '../rules';
import { audit, completeEffects } from './effects';
import { nextPermitNumber } from './numbering';
import { getScopedPermit, settledPermit } from './query';
import { insertRegistered } from '../registration';
import { readFilledBlocks } from '../status-blocks';
import { EDIT_GRACE_MS, markEdited, SEARCHED_FIELDS } from '../text-blocks';
import type { PendingEffects, PermitDoc } from './types';
import { guardedPermitWrite, staleVersion } from './versioning';

async function checkActiveType(models: Models, typeId: string): Promise<void> {
  if (!(await activeTypeIds(models, [typeId])).has(typeId)) throw invalidArgument('permit_type_id: unknown permit type', { field: 'permit_type_id' });
}

/** Creates a draft permit for the caller (SPEC §4 POST /permits/). */
export async function createPermit(models: Models, who: Principal, data: unknown, now = new Date()): Promise<PermitDoc> {
  const draft = permitDraft(who, data, now);
  await checkActiveType(models, draft.typeId);
  checkTimes(draft.fields.planned_start_time as Date | undefined, draft.fields.planned_end_time as Date | undefined);
  // Validated and cast as Model.create would, then written at the project's next place (registration.ts).
  const doc = new models.Permit({ ...draft.fields, permit_number: await nextPermitNumber(models, now) });
  await doc.validate();
  const created = doc.toObject() as PermitDoc;
  const [outcome] = await insertRegistered(models, created.project_id, [created], () => nextPermitNumber(models, now), readFilledBlocks(models, created.project_id));
  if (outcome !== 'inserted') throw conflict('Could not create the permit, retry');
  await models.Revision.create({ entity: 'permit', entity_id: String(created._id), version: 1, user_id: who.user_id, at: now });
  await audit(models, created, 'create', undefined, 'draft', who.user_id, '', now);
  return created;
}

/** Who may edit which permit: the creator while draft/rejected; supervisors and managers until it ends. */
function editRefusal(who: Principal, doc: PermitDoc): string | undefined {
  if (TERMINAL.has(doc.status)) return `Permit is ${doc.status}; it can no longer be edited`;
  if (who.role === 'service' || hasRole(who, 'supervisor')) return undefined;
  if (doc.created_by !== who.user_id) return 'Only the creator, a supervisor or a manager may edit this permit';
  if (doc.status !== 'draft' && doc.status !== 'rejected') return 'Only drafts can be edited by their creator';
  return undefined;
}

/**
 * PATCH: edits with `version`; a stale version is a 409 with the server state. `current` is the
 * permit as the caller has just read it within `who`'s scope (a sync edit reads it to classify the
 * change): it is not read again, since the write is guarded by `version` either way.
 */
export async function updatePermit(models: Models, who: Principal, id: string, version: number, changes: unknown, now = new Date(), current?: PermitDoc): Promise<PermitDoc> {
  const doc = current && String(current._id) === id && inScope(who, current.project_id) ? await settledPermit(models, current) : await getScopedPermit(models, who, id);
  const input = parseInput(updatePermitSchema, changes ?? {});
  if (!Number.isInteger(version) || version < 1) throw invalidArgument('version: required integer ≥ 1', { field: 'version' });
  const refusal = editRefusal(who, doc);
  if (refusal) throw TERMINAL.has(doc.status) ? failedPrecondition(refusal) : permissionDenied(refusal);
  if (version !== doc.version) throw await staleVersion(models, id, version, Object.keys(input));
  checkTimes(input.planned_start_time ?? (doc.planned_start_time as Date | undefined), input.planned_end_time ?? (doc.planned_end_time as Date | undefined));
  const set: Record<string, unknown> = { ...input };
  if (input.probability !== undefined || input.severity !== undefined) Object.assign(set, risk(input.probability ?? (doc.probability as number), input.severity ?? (doc.severity as number)));
  // A search reads the block again (text-blocks.ts): marked before the write, again after a slow one.
  const searched = SEARCHED_FIELDS.some((f) => set[f] !== undefined);
  const markedAt = Date.now();
  if (searched) await markEdited(models, doc);
  const updated = await guardedPermitWrite(models, doc, set, who.user_id, now, version);
  if (searched && Date.now() - markedAt > EDIT_GRACE_MS / 2) await markEdited(models, doc);
  await audit(models, updated, 'update', doc.status, doc.status, who.user_id, '', now);
  return updated;
}

/** Options of a transition: `system` is the jobs' own actor. */
export interface TransitionOptions {
  now?: Date;
}

/**
 * Moves a permit along the status machine with its gates (isolation before approval, closeout and
 * de-isolation before completion), stamps, workflow steps and an audit event.
 */
export async function transitionPermit(models: Models, who: Principal, id: string, toRaw: string, comments: string, opts: TransitionOptions = {}): Promise<PermitDoc> {
  const now = opts.now ?? new Date();
  const doc = await getScopedPermit(models, who, id);
  // An earlier transition's effects come first, however recent: the next one would replace its mark.
  if (doc.pending) await completeEffects(models, doc);
  if (!(PERMIT_STATUSES as readonly string[]).includes(toRaw)) throw invalidArgument(`status: unknown status "${toRaw.slice(0, 40)}"`, { field: 'status' });
  if (typeof comments !== 'string' || comments.length > 2000) throw invalidArgument('comments: at most 2000 characters', { field: 'comments' });
  // Checked before the first write: a comment the store refuses must not leave the status changed.
  if (storableIssue(comments)) throw invalidArgument('comments: must not contain a NUL character (U+0000)', { field: 'comments' });
  const to = toRaw as PermitStatus;
  const from = doc.status;
  if (!isAllowedTransition(from, to)) throw failedPrecondition(`Invalid status transition from ${from} to ${to}`, { from, to });
  const refusal = transitionRefusal(who, doc as never, to);
  if (refusal) throw permissionDenied(refusal);
  await checkGates(models, doc, to);

  const set: Record<string, unknown> = { status: to };
  const stamp = STAMPS[to];
  if (stamp) set[stamp] = now;
  if (to === 'active' && !doc.actual_start_time) set.actual_start_time = now;
  if ((to === 'completed' || to === 'expired' || (to === 'cancelled' && from === 'suspended')) && !doc.actual_end_time) set.actual_end_time = now;
  const pending: PendingEffects = { from, to, user_id: who.user_id, comments, at: now, version: doc.version + 1 };
  const updated = await guardedPermitWrite(models, doc, { ...set, pending }, who.user_id, now);
  // A failure here leaves the mark: the next read of the permit completes what is missing.
  await completeEffects(models, updated, false);
  const { pending: _done, ...clean } = updated;
  return clean as PermitDoc;
}

async function checkGates(models: Models, doc: PermitDoc, to: PermitStatus): Promise<void> {
  const id = String(doc._id);
  if (to === 'approved') {
    const type = await models.PermitType.findById(doc.permit_type_id).lean();
    if (type?.requires_isolation) {
      const points = await models.IsolationPoint.find({ permit_id: id, required: true }, { status: 1, name: 1 }).lean();
      if (points.length === 0) throw failedPrecondition('This permit type requires isolation: assign and verify its isolation points before approval');
      const unverified = points.filter((p) => p.status !== 'verified').map((p) => p.name);
      if (unverified.length) throw failedPrecondition(`Required isolation points are not verified: ${unverified.join(', ')}`, { unverified });
    }
  }
  if (to === 'completed') {
    const closeout = await models.Closeout.findOne({ permit_id: id }, { completed: 1 }).lean();
    if (!closeout?.completed) throw failedPrecondition('Closeout must be completed before the permit is completed');
    const stillIsolated = await models.IsolationPoint.find({ permit_id: id, status: { $in: ['isolated', 'verified'] } }, { name: 1 }).lean();
    if (stillIsolated.length)
      throw failedPrecondition(`Isolation points are not de-isolated: ${stillIsolated.map((p) => p.name).join(', ')}`, { isolated: stillIsolated.map((p) => p.name) });
  }
}
