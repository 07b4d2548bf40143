/** Isolation points of a permit (SPEC §2): assign, isolate → verify → de-isolate, never backwards. */
import { conflict, failedPrecondition, hasRole, notFound, permissionDenied, type Principal } from '@ptw/common';
import { claimVersion, type Models } from '@ptw/db';
import { isValidObjectId } from 'mongoose';
import { isolationPointInputSchema, isolationUpdateSchema, parseInput } from './input';
import { getScopedPermit } from './permits/query';
import type { PermitDoc } from './permits/types';
import { isolationStep, setMerge, TERMINAL } from './rules';
import { toIsolationMessage } from './serialize';
import { z } from 'zod';

/** Points of a permit with the summary of SPEC §4. */
export async function getIsolation(models: Models, who: Principal, permitId: string) {
  const permit = await getScopedPermit(models, who, permitId);
  return isolationView(models, permit);
}

async function isolationView(models: Models, permit: PermitDoc) {
  const points = await models.IsolationPoint.find({ permit_id: String(permit._id) })
    .sort({ _id: 1 })
    .lean();
  return { points: points.map(toIsolationMessage), summary: isolationSummary(points) };
}

/**
 * The summary of SPEC §4: `total` counts every point; `required`, `verified` and `deisolated`
 * count required points only, and `pending_verification = required − verified` — the points the
 * approval gate still waits for, whether they are not yet isolated, isolated but unverified, or
 * already de-isolated (the gate, like the original module, asks for status `verified`).
 */
export function isolationSummary(points: ReadonlyArray<{ required: boolean; status: string }>) {
  const required = points.filter((p) => p.required);
  const verified = required.filter((p) => p.status === 'verified').length;
  return {
    total: points.length,
    required: required.length,
    verified,
    deisolated: required.filter((p) => p.status === 'deisolated').length,
    pending_verification: required.length - verified,
  };
}

function requireIsolationRights(who: Principal, permit: PermitDoc, allowCreator: boolean): void {
  if (who.role === 'service' || hasRole(who, 'supervisor')) return;
  if (allowCreator && permit.created_by === who.user_id) return;
  throw permissionDenied(allowCreator ? 'Only the creator, a supervisor or a manager may assign isolation points' : 'Only a supervisor or a manager may isolate, verify or de-isolate');
}

const assignSchema = z.array(isolationPointInputSchema).min(1, 'at least one point').max(100, 'at most 100 points');

/** Adds one or many points (creator, supervisor or manager) to a permit that has not ended. */
export async function assignIsolation(models: Models, who: Principal, permitId: string, points: unknown) {
  const permit = await getScopedPermit(models, who, permitId);
  const input = parseInput(assignSchema, points);
  requireIsolationRights(who, permit, true);
  if (TERMINAL.has(permit.status)) throw failedPrecondition(`Permit is ${permit.status}; isolation can no longer change`);
  await models.IsolationPoint.insertMany(input.map((p) => ({ ...p, permit_id: String(permit._id), project_id: permit.project_id, status: 'assigned', version: 1 })));
  return isolationView(models, permit);
}

export interface IsolationUpdate {
  point_id: string;
  action: string;
  lock_ids?: string[];
  notes?: string;
}

/**
 * isolate | verify | deisolate one point (supervisor or manager). `expectedVersion` (sync) makes
 * a stale client a conflict; without it the current version is used. Version-guarded.
 */
export async function updateIsolation(models: Models, who: Principal, permitId: string, raw: IsolationUpdate, now = new Date(), expectedVersion?: number) {
  const permit = await getScopedPermit(models, who, permitId);
  const input = parseInput(isolationUpdateSchema, raw);
  requireIsolationRights(who, permit, false);
  if (!isValidObjectId(input.point_id) || !/^[0-9a-f]{24}$/i.test(input.point_id)) throw notFound('Isolation point not found');
  const point = await models.IsolationPoint.findOne({ _id: input.point_id, permit_id: String(permit._id) }).lean();
  if (!point) throw notFound('Isolation point not found');
  if (expectedVersion !== undefined && expectedVersion !== point.version) {
    throw conflict(`Stale version ${expectedVersion}: the isolation point is at version ${point.version}`, { server_version: point.version, server_state: toIsolationMessage(point) });
  }
  const step = isolationStep(point.status, input.action);
  if ('refusal' in step) throw failedPrecondition(step.refusal, { server_status: point.status });
  const set: Record<string, unknown> = { status: step.to, version: point.version + 1 };
  const actor = { isolated: 'isolated', verified: 'verified', deisolated: 'deisolated' }[step.to as 'isolated' | 'verified' | 'deisolated'];
  set[`${actor}_by`] = who.user_id;
  set[`${actor}_at`] = now;
  if (input.lock_ids) set.lock_ids = setMerge(point.lock_ids ?? [], input.lock_ids);
  if (input.notes !== undefined) set.notes = input.notes;
  const id = String(point._id);
  const stale = () => conflict('Isolation point was changed concurrently, retry', { server_version: point.version + 1 });
  if (!(await claimVersion(models, 'isolation_point', id, point.version, who.user_id))) throw stale();
  const updated = await models.IsolationPoint.findOneAndUpdate({ _id: id, version: point.version }, { $set: set }, { new: true }).lean();
  if (!updated) throw stale();
  return toIsolationMessage(updated);
}
