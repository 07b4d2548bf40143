/**
 * The bodies of the workflow jobs (SPEC §8), as plain functions of the store and a clock so tests
 * call them directly with an injected `now`. Each works in batches: one cursor read per batch,
 * then (about) one write command per kind of write, so a job's round trips grow with
 * `permits / batchSize`, never with the number of permits. Notifications are inserted unordered
 * and a duplicate-key error on `(user_id, dedupe_key)` means "already sent": that unique index is
 * the dedupe, on FerretDB as on MongoDB, whatever the number of racing workers.
 */
import { Types } from 'mongoose';
import { claimVersions, type Models } from '@ptw/db';
import { refreshBlocksOf } from '@ptw/domain';
import type { JobName } from './config';

export interface JobContext {
  models: Models;
  /** Documents read and written per store round trip. */
  batchSize: number;
}

export interface JobResult {
  /** Permits the run acted on (notified about or expired). */
  permit_count: number;
  /** Notifications actually inserted (duplicates of earlier runs excluded). */
  notified: number;
  /** `check_overdue_workflow_tasks` only: pending steps past their limit. */
  overdue_count?: number;
}

export type JobFunction = (ctx: JobContext, now: Date) => Promise<JobResult>;

/** Who system transitions and their revisions are attributed to. */
export const SYSTEM_USER = 'system';
/** `check_expiring_permits` warns about active permits ending within this window. */
export const EXPIRING_WINDOW_MS = 2 * 3600_000;
const HOUR_MS = 3600_000;

interface InsertManyError {
  writeErrors?: { code?: number } | { code?: number }[];
  insertedCount?: number;
}

/**
 * Unordered insert in one command; duplicate-key errors are expected (the row exists already) and
 * not counted. Returns how many documents were inserted; any other error is thrown.
 */
export async function insertIgnoringDuplicates(collection: Models['Notification']['collection'], docs: object[]): Promise<number> {
  if (docs.length === 0) return 0;
  try {
    return (await collection.insertMany(docs, { ordered: false })).insertedCount;
  } catch (err) {
    const e = err as InsertManyError;
    const errors = e.writeErrors === undefined ? [] : [e.writeErrors].flat();
    if (errors.length === 0 || errors.some((w) => w.code !== 11000)) throw err;
    return e.insertedCount ?? docs.length - errors.length;
  }
}

async function* inBatches<T>(cursor: AsyncIterable<T>, size: number): AsyncGenerator<T[]> {
  let batch: T[] = [];
  for await (const doc of cursor) {
    batch.push(doc);
    if (batch.length >= size) {
      yield batch;
      batch = [];
    }
  }
  if (batch.length > 0) yield batch;
}

/** UTC day of `now`, the per-day part of dedupe keys. */
export function dayKey(now: Date): string {
  return now.toISOString().slice(0, 10);
}

interface NotificationData {
  permit_id: string;
  step_id?: string;
  permit_number: string;
}

/** A notification document; title and message name the permit by number, never a person. */
function notification(userId: string, type: string, title: string, message: string, data: NotificationData, dedupeKey: string, now: Date) {
  return { user_id: userId, type, title, message, data, dedupe_key: dedupeKey, read: false, created_at: now };
}

interface PermitRow {
  _id: Types.ObjectId;
  permit_number: string;
  project_id: string;
  created_by: string;
  version: number;
  planned_end_time?: Date;
  actual_end_time?: Date | null;
  /** Its block of the registration order (@ptw/domain status-blocks.ts), read again once it moved. */
  list_block?: number;
}

/** `check_expiring_permits`: active permits ending within 2 h → `ptw_expiring` to the creator, once per permit and day. */
export async function checkExpiringPermits(ctx: JobContext, now: Date): Promise<JobResult> {
  const { Permit, Notification } = ctx.models;
  const until = new Date(now.getTime() + EXPIRING_WINDOW_MS);
  const cursor = Permit.collection.find<PermitRow>(
    { status: 'active', planned_end_time: { $gt: now, $lte: until } },
    { projection: { permit_number: 1, created_by: 1, planned_end_time: 1 }, batchSize: ctx.batchSize },
  );
  const day = dayKey(now);
  let permits = 0;
  let notified = 0;
  for await (const batch of inBatches(cursor, ctx.batchSize)) {
    permits += batch.length;
    const docs = batch.map((p) => {
      const id = String(p._id);
      return notification(
        p.created_by,
        'ptw_expiring',
        `Permit ${p.permit_number} expires soon`,
        `Permit ${p.permit_number} reaches its planned end time at ${p.planned_end_time?.toISOString()}.`,
        { permit_id: id, permit_number: p.permit_number },
        `expiring_${id}_${day}`,
        now,
      );
    });
    notified += await insertIgnoringDuplicates(Notification.collection, docs);
  }
  return { permit_count: permits, notified };
}

interface StepRow {
  _id: Types.ObjectId;
  permit_id: string;
  project_id: string;
  step: string;
  assignee_id?: string | null;
  started_at: Date;
  limit_hours: number;
}

function asObjectId(id: string): Types.ObjectId | undefined {
  return /^[0-9a-f]{24}$/i.test(id) ? new Types.ObjectId(id) : undefined;
}

/**
 * `check_overdue_workflow_tasks`: pending steps older than their `limit_hours` → `ptw_overdue` to
 * the assignee (key `{step_id}_{day}`); older than twice the limit → `ptw_escalated` to every
 * manager of the step's project (key `escalated_{step_id}_{day}`). A step without an assignee is
 * still escalated. Managers are looked up once per batch for the projects not seen yet in the run.
 */
export async function checkOverdueWorkflowTasks(ctx: JobContext, now: Date): Promise<JobResult> {
  const { WorkflowStep, Permit, User, Notification } = ctx.models;
  // Limits differ per step and FerretDB has no usable $expr: one clause per distinct limit keeps
  // the filter exact in the store.
  const limits = (await WorkflowStep.collection.distinct('limit_hours', { status: 'pending' })).filter((l): l is number => typeof l === 'number' && Number.isFinite(l));
  if (limits.length === 0) return { permit_count: 0, notified: 0, overdue_count: 0 };
  const cursor = WorkflowStep.collection.find<StepRow>(
    { status: 'pending', $or: limits.map((l) => ({ limit_hours: l, started_at: { $lt: new Date(now.getTime() - l * HOUR_MS) } })) },
    { projection: { permit_id: 1, project_id: 1, step: 1, assignee_id: 1, started_at: 1, limit_hours: 1 }, batchSize: ctx.batchSize },
  );
  const day = dayKey(now);
  const managersOf = new Map<string, string[]>();
  const permitsSeen = new Set<string>();
  let overdue = 0;
  let notified = 0;
  for await (const batch of inBatches(cursor, ctx.batchSize)) {
    overdue += batch.length;
    const permitIds = [...new Set(batch.map((s) => s.permit_id))];
    permitIds.forEach((id) => permitsSeen.add(id));
    const oids = permitIds.map(asObjectId).filter((o): o is Types.ObjectId => o !== undefined);
    const numbers = new Map<string, string>();
    if (oids.length > 0) {
      const rows = await Permit.collection.find<PermitRow>({ _id: { $in: oids } }, { projection: { permit_number: 1 }, batchSize: oids.length }).toArray();
      for (const r of rows) numbers.set(String(r._id), r.permit_number);
    }
    const escalated = batch.filter((s) => s.started_at.getTime() < now.getTime() - 2 * s.limit_hours * HOUR_MS);
    const unknownProjects = [...new Set(escalated.map((s) => s.project_id))].filter((p) => !managersOf.has(p));
    if (unknownProjects.length > 0) {
      for (const p of unknownProjects) managersOf.set(p, []);
      const managers = await User.collection
        .find<{ _id: string; project_ids: string[] }>({ role: 'manager', project_ids: { $in: unknownProjects } }, { projection: { project_ids: 1 }, batchSize: 10_000 })
        .toArray();
      for (const m of managers) {
        for (const p of m.project_ids) if (unknownProjects.includes(p)) managersOf.get(p)?.push(String(m._id));
      }
    }
    const docs: object[] = [];
    for (const s of batch) {
      const stepId = String(s._id);
      const number = numbers.get(s.permit_id) ?? '';
      const data = { permit_id: s.permit_id, step_id: stepId, permit_number: number };
      if (s.assignee_id) {
        docs.push(
          notification(
            s.assignee_id,
            'ptw_overdue',
            `Workflow task overdue: permit ${number}`,
            `The ${s.step} step of permit ${number} has been pending for more than ${s.limit_hours} hours.`,
            data,
            `${stepId}_${day}`,
            now,
          ),
        );
      }
    }
    for (const s of escalated) {
      const stepId = String(s._id);
      const number = numbers.get(s.permit_id) ?? '';
      for (const managerId of managersOf.get(s.project_id) ?? []) {
        docs.push(
          notification(
            managerId,
            'ptw_escalated',
            `Workflow task escalated: permit ${number}`,
            `The ${s.step} step of permit ${number} has been pending for more than ${2 * s.limit_hours} hours.`,
            { permit_id: s.permit_id, step_id: stepId, permit_number: number },
            `escalated_${stepId}_${day}`,
            now,
          ),
        );
      }
    }
    notified += await insertIgnoringDuplicates(Notification.collection, docs);
  }
  return { permit_count: permitsSeen.size, notified, overdue_count: overdue };
}

/**
 * FerretDB 1.24 never answers an `update` command of 100 statements or more (its handler keeps each
 * statement's query open until the command ends, and its SQLite pool has 100 connections), so
 * statements go out in commands of at most this many.
 */
const MAX_UPDATE_STATEMENTS = 50;

/**
 * Moves claimed permits to `expired` with one version-guarded `updateMany` per (project, version,
 * has an actual end) group, filtered by `{project_id, version, status: 'active', _id: {$in}}`.
 * FerretDB's PostgreSQL backend pushes down only the equalities (each statement reads the active
 * permits of one project and version, then keeps the listed ids), its SQLite backend none (and one
 * `updateOne` per permit would scan the collection per permit there): with the due permits read in
 * (project, version) order, a batch spans one or two groups, so the permits the store reads per
 * batch stay near the batch size. Returns how many permits matched.
 */
async function expireClaimed(collection: Models['Permit']['collection'], targets: PermitRow[], now: Date): Promise<number> {
  const groups = new Map<string, { project: string; version: number; setEnd: boolean; ids: Types.ObjectId[] }>();
  for (const p of targets) {
    const key = JSON.stringify([p.project_id, p.version, !p.actual_end_time]);
    const g = groups.get(key) ?? { project: p.project_id, version: p.version, setEnd: !p.actual_end_time, ids: [] };
    g.ids.push(p._id);
    groups.set(key, g);
  }
  const ops = [...groups.values()].map((g) => ({
    updateMany: {
      filter: { project_id: g.project, version: g.version, status: 'active', _id: { $in: g.ids } },
      update: { $set: { status: 'expired', version: g.version + 1, updated_at: now, ...(g.setEnd ? { actual_end_time: now } : {}) } },
    },
  }));
  let matched = 0;
  for (let i = 0; i < ops.length; i += MAX_UPDATE_STATEMENTS) {
    matched += (await collection.bulkWrite(ops.slice(i, i + MAX_UPDATE_STATEMENTS), { ordered: false })).matchedCount;
  }
  return matched;
}

/**
 * `auto_expire_permits`: active permits past their planned end → `expired` (the system
 * transition). Per batch: the next versions are claimed in one insert on the revisions unique
 * index (a permit written concurrently loses its claim and is left for the next run), the claimed
 * permits move by version-guarded updates grouped by project and version (see {@link expireClaimed}), then
 * one insert of audit events and one of `ptw_expired` notifications (key `expired_{permit_id}`).
 */
export async function autoExpirePermits(ctx: JobContext, now: Date): Promise<JobResult> {
  const { Permit, AuditEvent, Notification } = ctx.models;
  const cursor = Permit.collection.find<PermitRow>(
    { status: 'active', planned_end_time: { $lt: now } },
    // Grouped so that each batch's guarded updates touch few (project, version) groups.
    { projection: { permit_number: 1, project_id: 1, created_by: 1, version: 1, actual_end_time: 1, list_block: 1 }, sort: { project_id: 1, version: 1, _id: 1 }, batchSize: ctx.batchSize },
  );
  let expiredCount = 0;
  let notified = 0;
  for await (const batch of inBatches(cursor, ctx.batchSize)) {
    const claimed = await claimVersions(
      ctx.models,
      'permit',
      batch.map((p) => ({ id: String(p._id), fromVersion: p.version })),
      SYSTEM_USER,
    );
    const targets = batch.filter((p) => claimed.has(String(p._id)));
    if (targets.length === 0) continue;
    const matched = await expireClaimed(Permit.collection, targets, now);
    let expired = targets;
    if (matched !== targets.length) {
      // Only a writer that bypassed the version guard can get here; keep the permits this run moved.
      const rows = await Permit.collection
        .find<PermitRow & { status: string }>({ _id: { $in: targets.map((p) => p._id) } }, { projection: { status: 1, version: 1 }, batchSize: targets.length })
        .toArray();
      const moved = new Set(rows.filter((r) => r.status === 'expired').map((r) => `${String(r._id)}:${r.version}`));
      expired = targets.filter((p) => moved.has(`${String(p._id)}:${p.version + 1}`));
    }
    if (expired.length === 0) continue;
    await refreshBlocksOf(ctx.models, expired);
    await AuditEvent.collection.insertMany(
      expired.map((p) => ({
        permit_id: String(p._id),
        project_id: p.project_id,
        action: 'status_change',
        from: 'active',
        to: 'expired',
        user_id: SYSTEM_USER,
        comments: 'Auto-expired: planned end time passed',
        at: now,
      })),
      { ordered: false },
    );
    notified += await insertIgnoringDuplicates(
      Notification.collection,
      expired.map((p) => {
        const id = String(p._id);
        return notification(
          p.created_by,
          'ptw_expired',
          `Permit ${p.permit_number} expired`,
          `Permit ${p.permit_number} was expired automatically: its planned end time passed.`,
          { permit_id: id, permit_number: p.permit_number },
          `expired_${id}`,
          now,
        );
      }),
    );
    expiredCount += expired.length;
  }
  return { permit_count: expiredCount, notified };
}

/** Each job's body by name. */
export const JOB_FUNCTIONS: Record<JobName, JobFunction> = {
  check_expiring_permits: checkExpiringPermits,
  check_overdue_workflow_tasks: checkOverdueWorkflowTasks,
  auto_expire_permits: autoExpirePermits,
};
