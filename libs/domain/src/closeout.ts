/** Closeout of a permit (SPEC §2): checklist from the permit type, merge updates, complete. */
import { conflict, failedPrecondition, hasRole, invalidArgument, permissionDenied, type Principal } from '@ptw/common';
import { claimVersion, isDuplicateKey, type Models } from '@ptw/db';
import { closeoutUpdateSchema, parseInput } from './input';
import { getScopedPermit } from './permits/query';
import type { PermitDoc } from './permits/types';
import { toCloseoutMessage } from './serialize';

type Item = { key: string; label: string; required: boolean };

async function typeItems(models: Models, permit: PermitDoc): Promise<Item[]> {
  const type = await models.PermitType.findById(permit.permit_type_id, { closeout_items: 1 }).lean();
  return (type?.closeout_items ?? []).map((i) => ({ key: i.key ?? '', label: i.label ?? '', required: !!i.required }));
}

/** The closeout document, created from the type's items on first read (a racing create is absorbed by the unique index). */
async function loadOrCreate(models: Models, permit: PermitDoc, items: Item[]) {
  const permitId = String(permit._id);
  const existing = await models.Closeout.findOne({ permit_id: permitId }).lean();
  if (existing) return existing;
  const checklist = Object.fromEntries(items.map((i) => [i.key, { done: false, comments: '' }]));
  try {
    await models.Closeout.create({ permit_id: permitId, project_id: permit.project_id, checklist, remarks: '', completed: false, version: 1 });
  } catch (err) {
    if (!isDuplicateKey(err)) throw err;
  }
  return (await models.Closeout.findOne({ permit_id: permitId }).lean())!;
}

/** GET closeout (any role in scope). */
export async function getCloseout(models: Models, who: Principal, permitId: string) {
  const permit = await getScopedPermit(models, who, permitId);
  const items = await typeItems(models, permit);
  return toCloseoutMessage(await loadOrCreate(models, permit, items), items);
}

const CLOSEOUT_STATUSES = new Set(['approved', 'active', 'suspended']);

function requireCloseoutRights(who: Principal, permit: PermitDoc): void {
  if (!(who.role === 'service' || hasRole(who, 'supervisor'))) throw permissionDenied('Only a supervisor or a manager may update the closeout');
  if (!CLOSEOUT_STATUSES.has(permit.status)) throw failedPrecondition(`Closeout can only change while the permit is approved, active or suspended (it is ${permit.status})`);
}

export interface CloseoutUpdateOptions {
  now?: Date;
  /** Sync: `done` only moves to true (the `true_wins` merge hint). */
  trueWins?: boolean;
  expectedVersion?: number;
}

/** Merges checklist items and remarks into the closeout (supervisor or manager), version-guarded. */
export async function updateCloseout(models: Models, who: Principal, permitId: string, raw: unknown, opts: CloseoutUpdateOptions = {}) {
  const now = opts.now ?? new Date();
  const permit = await getScopedPermit(models, who, permitId);
  const input = parseInput(closeoutUpdateSchema, raw ?? {});
  requireCloseoutRights(who, permit);
  const items = await typeItems(models, permit);
  const keys = new Set(items.map((i) => i.key));
  const unknown = Object.keys(input.checklist ?? {}).filter((k) => !keys.has(k));
  if (unknown.length) throw invalidArgument(`checklist.${unknown[0]}: unknown closeout item`, { field: `checklist.${unknown[0]}`, unknown });
  const doc = await loadOrCreate(models, permit, items);
  if (doc.completed) throw failedPrecondition('Closeout is already completed');
  if (opts.expectedVersion !== undefined && opts.expectedVersion !== doc.version) {
    throw conflict(`Stale version ${opts.expectedVersion}: the closeout is at version ${doc.version}`, { server_version: doc.version, server_state: toCloseoutMessage(doc, items) });
  }
  const checklist = { ...(doc.checklist as Record<string, { done: boolean; comments: string; by?: string; at?: Date }>) };
  for (const [key, change] of Object.entries(input.checklist ?? {})) {
    const cur = checklist[key] ?? { done: false, comments: '' };
    const done = change.done === undefined ? cur.done : opts.trueWins ? cur.done || change.done : change.done;
    checklist[key] = {
      done,
      comments: change.comments ?? cur.comments,
      ...(done && !cur.done ? { by: who.user_id, at: now } : done ? { by: cur.by, at: cur.at } : {}),
    };
  }
  const set: Record<string, unknown> = { checklist, version: doc.version + 1 };
  if (input.remarks !== undefined) set.remarks = input.remarks;
  return toCloseoutMessage(await guardedCloseoutWrite(models, doc, set, who.user_id), items);
}

async function guardedCloseoutWrite(models: Models, doc: { _id: unknown; version: number }, set: Record<string, unknown>, userId: string) {
  const id = String(doc._id);
  const stale = () => conflict('Closeout was changed concurrently, retry', { server_version: doc.version + 1 });
  if (!(await claimVersion(models, 'closeout', id, doc.version, userId))) throw stale();
  const updated = await models.Closeout.findOneAndUpdate({ _id: id, version: doc.version }, { $set: set }, { new: true }).lean();
  if (!updated) throw stale();
  return updated;
}

/** Completes the closeout when every required item is done, else 400 listing the missing labels. */
export async function completeCloseout(models: Models, who: Principal, permitId: string, now = new Date()) {
  const permit = await getScopedPermit(models, who, permitId);
  requireCloseoutRights(who, permit);
  const items = await typeItems(models, permit);
  const doc = await loadOrCreate(models, permit, items);
  if (doc.completed) throw failedPrecondition('Closeout is already completed');
  const checklist = doc.checklist as Record<string, { done?: boolean }>;
  const missing = items.filter((i) => i.required && !checklist[i.key]?.done).map((i) => i.label);
  if (missing.length) throw invalidArgument(`Closeout is incomplete: ${missing.join(', ')}`, { missing });
  const set = { completed: true, completed_at: now, completed_by: who.user_id, version: doc.version + 1 };
  return toCloseoutMessage(await guardedCloseoutWrite(models, doc, set, who.user_id), items);
}
