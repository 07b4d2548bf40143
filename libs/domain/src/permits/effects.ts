/** A transition's effects after its status change: the audit event, the workflow steps and the block's status reading. */
import { insertOne, type Models, type PermitStatus } from '@ptw/db';
import { refreshBlocksOf } from '../status-blocks';
import type { PendingEffects, PermitDoc } from './types';

/** A pending transition younger than this may still be completed by its own writer. */
export const PENDING_GRACE_MS = 5_000;

/**
 * Writes a transition's audit event and steps (each at most once: a recovery first looks for what an
 * earlier attempt wrote, by the permit's id), then clears the mark. Idempotent.
 */
export async function completeEffects(models: Models, permit: PermitDoc, recovering = true): Promise<void> {
  const p = permit.pending as PendingEffects | undefined;
  if (!p) return;
  const id = String(permit._id);
  const at = new Date(p.at);
  const auditDone = recovering && (await models.AuditEvent.exists({ permit_id: id, action: 'status_change', to: p.to, at }));
  if (!auditDone) await audit(models, permit, 'status_change', p.from, p.to, p.user_id, p.comments, at);
  await moveSteps(models, permit, p.from, p.to, at, recovering);
  // The block's status reading, after the status change (status-blocks.ts): before the mark is
  // cleared, so that a crash here is completed by the next reader like the rest.
  await refreshBlocksOf(models, [permit]);
  await models.Permit.updateOne({ _id: id, 'pending.version': p.version }, { $unset: { pending: 1 } });
}

/** Writes one audit event. */
export async function audit(models: Models, permit: PermitDoc, action: string, from: string | undefined, to: string | undefined, userId: string, comments: string, at: Date): Promise<void> {
  await insertOne(models.AuditEvent, { permit_id: String(permit._id), project_id: permit.project_id, action, from, to, user_id: userId, comments, at });
}

/**
 * Workflow steps follow the permit: submit opens verification (due now) and approval (due once
 * verified); verify completes verification and starts approval; approve completes approval;
 * reject, withdraw or return closes what is pending as rejected (a new submit opens new steps).
 */
async function moveSteps(models: Models, permit: PermitDoc, from: PermitStatus, to: PermitStatus, now: Date, recovering = false): Promise<void> {
  const id = String(permit._id);
  const pending = { permit_id: id, status: 'pending' };
  if (to === 'submitted') {
    if (from === 'under_review') await models.WorkflowStep.updateMany(pending, { $set: { status: 'rejected', completed_at: now } });
    // A recovery inserts the new steps only when the interrupted attempt did not (they carry its time).
    if (recovering && (await models.WorkflowStep.exists({ permit_id: id, step: 'verification', started_at: now }))) return;
    const type = await models.PermitType.findById(permit.permit_type_id, { escalation_hours: 1 }).lean();
    const limit = type?.escalation_hours ?? 4;
    await models.WorkflowStep.insertMany([
      { permit_id: id, project_id: permit.project_id, step: 'verification', assignee_id: permit.verifier_id as string | undefined, status: 'pending', started_at: now, limit_hours: limit },
      { permit_id: id, project_id: permit.project_id, step: 'approval', assignee_id: permit.approver_id as string | undefined, status: 'pending', limit_hours: limit },
    ]);
  } else if (to === 'under_review') {
    await models.WorkflowStep.updateMany({ ...pending, step: 'verification' }, { $set: { status: 'completed', completed_at: now } });
    await models.WorkflowStep.updateMany({ ...pending, step: 'approval' }, { $set: { started_at: now } });
  } else if (to === 'approved') {
    await models.WorkflowStep.updateMany({ ...pending, step: 'approval' }, { $set: { status: 'completed', completed_at: now } });
  } else if (to === 'rejected' || to === 'draft' || to === 'cancelled') {
    await models.WorkflowStep.updateMany(pending, { $set: { status: 'rejected', completed_at: now } });
  }
}
