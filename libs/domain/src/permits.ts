/**
 * Permit repository operations: every read is project-scoped, every write is version-guarded by
 * the revisions unique index (see @ptw/db claimVersion), every transition is audited.
 */
import { conflict, failedPrecondition, hasRole, inScope, invalidArgument, notFound, permissionDenied, storableIssue, type Principal } from '@ptw/common';
import { claimVersion, isDuplicateKey, PERMIT_STATUSES, type Models, type PermitStatus } from '@ptw/db';
import { isValidObjectId } from 'mongoose';
import { checkTimes, permitDraft, reserveNumbers } from './bulk';
import { parseInput, permitFilterSchema, updatePermitSchema } from './input';
import { DAY_WALK_MAX_DEPTH, NEWEST_FIRST, newestOfProject } from './list';
import { isAllowedTransition, risk, STAMPS, TERMINAL, transitionRefusal } from './rules';
import { toPermitMessage } from './serialize';

// eslint-disable-next-line @typescript-eslint/no-explicit-any
export type PermitDoc = Record<string, any> & { _id: unknown; version: number; status: PermitStatus; project_id: string };

/** Loads a permit the caller may see; any other (unknown, malformed id, other project) is NOT_FOUND. */
export async function getScopedPermit(models: Models, who: Principal, id: string): Promise<PermitDoc> {
  if (!isValidObjectId(id) || !/^[0-9a-f]{24}$/i.test(id)) throw notFound('Permit not found');
  const doc = (await models.Permit.findById(id).lean()) as PermitDoc | null;
  if (!doc || !inScope(who, doc.project_id)) throw notFound('Permit not found');
  if (doc.pending && Date.now() - new Date((doc.pending as PendingEffects).at).getTime() >= PENDING_GRACE_MS) await completeEffects(models, doc);
  return doc;
}

/**
 * What a transition still has to write after its status change: the audit event and the workflow
 * steps. It is stored in the permit with the status change itself (one document, one atomic write),
 * and removed once they are written. A writer that failed or died in between leaves it there, and
 * the next read of the permit completes it: no transition stays half applied.
 */
export interface PendingEffects {
  from: PermitStatus;
  to: PermitStatus;
  user_id: string;
  comments: string;
  at: Date;
  version: number;
}

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
  await models.Permit.updateOne({ _id: id, 'pending.version': p.version }, { $unset: { pending: 1 } });
}

/** The projects a caller may filter on: their own (service tokens: any). */
function projectFilter(who: Principal, requested?: string): Record<string, unknown> {
  if (requested) return who.role === 'service' || who.project_ids.includes(requested) ? { project_id: requested } : { project_id: { $in: [] } };
  return who.role === 'service' ? {} : { project_id: { $in: who.project_ids } };
}

function escapeRegex(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

export interface PermitFilterInput {
  status?: string[];
  permit_type?: string;
  project?: string;
  created_from?: string;
  created_to?: string;
  planned_end_from?: string;
  planned_end_to?: string;
  q?: string;
}

/** Builds the MongoDB query for the list filters of SPEC §4 within the caller's projects. */
export function permitQuery(who: Principal, raw: PermitFilterInput): Record<string, unknown> {
  const clean = Object.fromEntries(Object.entries(raw).filter(([, v]) => v !== '' && v !== undefined && !(Array.isArray(v) && v.length === 0)));
  const f = parseInput(permitFilterSchema, clean);
  const q: Record<string, unknown> = projectFilter(who, f.project);
  if (f.status) {
    const bad = f.status.find((s) => !(PERMIT_STATUSES as readonly string[]).includes(s));
    if (bad !== undefined) throw invalidArgument(`status: unknown status "${bad.slice(0, 40)}"`, { field: 'status' });
    q.status = { $in: f.status };
  }
  if (f.permit_type) q.permit_type_id = f.permit_type;
  const range = (from?: Date, to?: Date) => ({ ...(from ? { $gte: from } : {}), ...(to ? { $lte: to } : {}) });
  if (f.created_from || f.created_to) q.created_at = range(f.created_from, f.created_to);
  if (f.planned_end_from || f.planned_end_to) q.planned_end_time = range(f.planned_end_from, f.planned_end_to);
  if (f.q) {
    const rx = { $regex: escapeRegex(f.q), $options: 'i' };
    q.$or = [{ title: rx }, { permit_number: rx }, { location: rx }, { description: rx }];
  }
  return q;
}

/**
 * Deepest result a list may page to (page × page_size), as Elasticsearch's `max_result_window`:
 * a page costs the store the results before it, so one request can make it read at most this many.
 */
export const MAX_LIST_DEPTH = 10_000;

/**
 * At most this many sub-queries per request. FerretDB's PostgreSQL backend pushes down only
 * top-level equality (not `$in`, ranges or sorts), so a caller's projects and statuses are split
 * into one equality query per (project, status) pair while there are few of them; past that the
 * `$in` query goes to the store as it is (correct, but filtered in FerretDB's memory).
 */
export const MAX_SPLIT_QUERIES = 20;

function values(v: unknown): unknown[] | undefined {
  if (v === undefined) return undefined;
  if (typeof v === 'object' && v !== null && '$in' in v) return [...new Set((v as { $in: unknown[] }).$in)];
  return [v];
}

/**
 * The query of {@link permitQuery} as disjoint queries whose union it is, each with `project_id`
 * and `status` as plain equality where possible (see {@link MAX_SPLIT_QUERIES}); none when the
 * caller can see no project at all.
 */
export function permitQueryParts(who: Principal, raw: PermitFilterInput): Record<string, unknown>[] {
  const q = permitQuery(who, raw);
  const projects = values(q.project_id);
  const statuses = values(q.status);
  if (projects?.length === 0 || statuses?.length === 0) return [];
  const byProject = projects ?? [undefined];
  const byStatus = statuses ?? [undefined];
  const parts: Record<string, unknown>[] = [];
  if (byProject.length * byStatus.length <= MAX_SPLIT_QUERIES) {
    for (const project_id of byProject) for (const status of byStatus) parts.push({ ...q, ...(project_id === undefined ? {} : { project_id }), ...(status === undefined ? {} : { status }) });
  } else if (byProject.length <= MAX_SPLIT_QUERIES) {
    for (const project_id of byProject) parts.push({ ...q, ...(project_id === undefined ? {} : { project_id }) });
  } else {
    parts.push(q);
  }
  return parts;
}

function newerFirst(a: PermitDoc, b: PermitDoc): number {
  const t = new Date(b.created_at).getTime() - new Date(a.created_at).getTime();
  if (t !== 0) return t;
  const x = String(a._id);
  const y = String(b._id);
  return x < y ? 1 : x > y ? -1 : 0;
}

/**
 * One page of the caller's permits, newest first. Each part of the query (see
 * {@link permitQueryParts}) is counted and read up to the page's depth in parallel; the parts are
 * disjoint, so the counts add up and the page is the merged head.
 */
export interface ListOptions {
  /**
   * Serve the default list by day buckets (list.ts): right where the store pushes equality down to
   * an index (MongoDB, FerretDB on PostgreSQL); on FerretDB's SQLite backend, which pushes down
   * only `_id`, every query scans, so fewer queries win there.
   */
  dayWalk?: boolean;
}

export async function listPermits(models: Models, who: Principal, filter: PermitFilterInput, page: number, pageSize: number, opts: ListOptions = {}) {
  if (!Number.isInteger(page) || page < 1) throw invalidArgument('page: expected an integer ≥ 1', { field: 'page' });
  if (!Number.isInteger(pageSize) || pageSize < 1 || pageSize > 100) throw invalidArgument('page_size: expected an integer from 1 to 100', { field: 'page_size' });
  if (page * pageSize > MAX_LIST_DEPTH) {
    throw invalidArgument(`page: only the first ${MAX_LIST_DEPTH} results can be listed (page × page_size); narrow the filters`, { field: 'page' });
  }
  const parts = permitQueryParts(who, filter);
  const skip = (page - 1) * pageSize;
  const plainProjects = parts.every((q) => Object.keys(q).length === 1 && typeof q.project_id === 'string');
  if ((opts.dayWalk ?? true) && parts.length > 0 && plainProjects && skip + pageSize <= DAY_WALK_MAX_DEPTH) {
    // No filter but the projects: day buckets (see list.ts), the same page and count.
    const now = new Date();
    const heads = await Promise.all(parts.map((q) => newestOfProject(models, q.project_id as string, skip + pageSize, now)));
    const docs = heads.flatMap((h) => h.docs).sort(newerFirst).slice(skip, skip + pageSize);
    return { count: heads.reduce((a, h) => a + h.count, 0), results: docs.map((d) => toPermitMessage(d)) };
  }
  if (parts.length <= 1) {
    const q = parts[0];
    if (!q) return { count: 0, results: [] };
    const [count, docs] = await Promise.all([models.Permit.countDocuments(q), models.Permit.find(q).sort(NEWEST_FIRST).skip(skip).limit(pageSize).lean()]);
    return { count, results: docs.map((d) => toPermitMessage(d)) };
  }
  const [counts, heads] = await Promise.all([
    Promise.all(parts.map((q) => models.Permit.countDocuments(q))),
    // One reply per part (the driver's first batch is otherwise 101 documents).
    Promise.all(parts.map((q) => models.Permit.find(q).sort(NEWEST_FIRST).limit(skip + pageSize).batchSize(skip + pageSize).lean() as Promise<PermitDoc[]>)),
  ]);
  const docs = heads.flat().sort(newerFirst).slice(skip, skip + pageSize);
  return { count: counts.reduce((a, b) => a + b, 0), results: docs.map((d) => toPermitMessage(d)) };
}

/**
 * Next permit number PTW-YYYY-NNNNNN. The counter's $inc is not atomic on FerretDB, so two
 * creators may get the same number: the permits' unique index refuses the second insert and the
 * caller retries with a fresh number (numbers may have gaps, never duplicates).
 */
async function nextPermitNumber(models: Models, now: Date): Promise<string> {
  return (await reserveNumbers(models, now, 1))[0];
}

async function loadActiveType(models: Models, typeId: string) {
  const type = await models.PermitType.findOne({ _id: typeId, active: true }).lean();
  if (!type) throw invalidArgument('permit_type_id: unknown permit type', { field: 'permit_type_id' });
  return type;
}

/** Creates a draft permit for the caller (SPEC §4 POST /permits/). */
export async function createPermit(models: Models, who: Principal, data: unknown, now = new Date()): Promise<PermitDoc> {
  const draft = permitDraft(who, data, now);
  await loadActiveType(models, draft.typeId);
  checkTimes(draft.fields.planned_start_time as Date | undefined, draft.fields.planned_end_time as Date | undefined);
  const base = draft.fields;
  for (let attempt = 0; attempt < 50; attempt++) {
    const permit_number = await nextPermitNumber(models, now);
    try {
      const created = await models.Permit.create({ ...base, permit_number });
      await models.Revision.create({ entity: 'permit', entity_id: String(created._id), version: 1, user_id: who.user_id, at: now });
      await audit(models, created.toObject() as PermitDoc, 'create', undefined, 'draft', who.user_id, '', now);
      return created.toObject() as PermitDoc;
    } catch (err) {
      if (!isDuplicateKey(err)) throw err;
      await new Promise((r) => setTimeout(r, Math.random() * 5 * (attempt + 1)));
    }
  }
  throw conflict('Could not allocate a permit number, retry');
}

/** Writes one audit event. */
export async function audit(models: Models, permit: PermitDoc, action: string, from: string | undefined, to: string | undefined, userId: string, comments: string, at: Date): Promise<void> {
  await models.AuditEvent.create({ permit_id: String(permit._id), project_id: permit.project_id, action, from, to, user_id: userId, comments, at });
}

/**
 * A 409 carrying the server's current state, for the client to merge: the fields the change named
 * (all of them when it named none) with the permit's id, version and status, so the answer stays
 * small whatever the permit holds.
 */
export async function staleVersion(models: Models, id: string, sentVersion: number | undefined, named?: string[]) {
  const current = await models.Permit.findById(id).lean();
  const state = current ? (toPermitMessage(current) as unknown as Record<string, unknown>) : undefined;
  const shown = state && named?.length ? Object.fromEntries(Object.entries(state).filter(([k]) => ['id', 'version', 'status', ...named].includes(k))) : state;
  return conflict(
    sentVersion === undefined ? 'Permit was changed concurrently, retry' : `Stale version ${sentVersion}: the permit is at version ${current?.version}`,
    { server_version: current?.version, server_state: shown },
  );
}

/**
 * Applies `set` to a permit read at `doc.version`: claims the next version (unique index), then
 * updates with `{_id, version}` as the filter. Returns the new document or throws a 409 with the
 * server state when another writer got there first.
 */
export async function guardedPermitWrite(models: Models, doc: PermitDoc, set: Record<string, unknown>, userId: string, now: Date, sentVersion?: number): Promise<PermitDoc> {
  const id = String(doc._id);
  if (!(await claimVersion(models, 'permit', id, doc.version, userId))) throw await staleVersion(models, id, sentVersion);
  const updated = (await models.Permit.findOneAndUpdate(
    { _id: id, version: doc.version },
    { $set: { ...set, version: doc.version + 1, updated_at: now } },
    { new: true },
  ).lean()) as PermitDoc | null;
  if (!updated) throw await staleVersion(models, id, sentVersion);
  return updated;
}

/** Who may edit which permit: the creator while draft/rejected; supervisors and managers until it ends. */
function editRefusal(who: Principal, doc: PermitDoc): string | undefined {
  if (TERMINAL.has(doc.status)) return `Permit is ${doc.status}; it can no longer be edited`;
  if (who.role === 'service' || hasRole(who, 'supervisor')) return undefined;
  if (doc.created_by !== who.user_id) return 'Only the creator, a supervisor or a manager may edit this permit';
  if (doc.status !== 'draft' && doc.status !== 'rejected') return 'Only drafts can be edited by their creator';
  return undefined;
}

/** PATCH: edits with `version`; a stale version is a 409 with the server state. */
export async function updatePermit(models: Models, who: Principal, id: string, version: number, changes: unknown, now = new Date()): Promise<PermitDoc> {
  const doc = await getScopedPermit(models, who, id);
  const input = parseInput(updatePermitSchema, changes ?? {});
  if (!Number.isInteger(version) || version < 1) throw invalidArgument('version: required integer ≥ 1', { field: 'version' });
  const refusal = editRefusal(who, doc);
  if (refusal) throw TERMINAL.has(doc.status) ? failedPrecondition(refusal) : permissionDenied(refusal);
  if (version !== doc.version) throw await staleVersion(models, id, version, Object.keys(input));
  checkTimes(input.planned_start_time ?? doc.planned_start_time, input.planned_end_time ?? doc.planned_end_time);
  const set: Record<string, unknown> = { ...input };
  if (input.probability !== undefined || input.severity !== undefined) Object.assign(set, risk(input.probability ?? doc.probability, input.severity ?? doc.severity));
  const updated = await guardedPermitWrite(models, doc, set, who.user_id, now, version);
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
    if (stillIsolated.length) throw failedPrecondition(`Isolation points are not de-isolated: ${stillIsolated.map((p) => p.name).join(', ')}`, { isolated: stillIsolated.map((p) => p.name) });
  }
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
      { permit_id: id, project_id: permit.project_id, step: 'verification', assignee_id: permit.verifier_id, status: 'pending', started_at: now, limit_hours: limit },
      { permit_id: id, project_id: permit.project_id, step: 'approval', assignee_id: permit.approver_id, status: 'pending', limit_hours: limit },
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
