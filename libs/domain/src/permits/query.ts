/** Permit reads: one permit within the caller's scope, and the list with its filters. */
import { inScope, invalidArgument, notFound, type Principal } from '@ptw/common';
import { PERMIT_STATUSES, type Models } from '@ptw/db';
import { isValidObjectId } from 'mongoose';
import { parseInput, permitFilterSchema } from '../input';
import { registeredPage } from '../registration';
import { statusPage } from '../status-blocks';
import { searchPage } from '../text-blocks';
import { toPermitMessage } from '../serialize';
import { completeEffects, PENDING_GRACE_MS } from './effects';
import type { PendingEffects, PermitDoc, PermitFilterInput } from './types';

/** Loads a permit the caller may see; any other (unknown, malformed id, other project) is NOT_FOUND. */
export async function getScopedPermit(models: Models, who: Principal, id: string): Promise<PermitDoc> {
  if (!isValidObjectId(id) || !/^[0-9a-f]{24}$/i.test(id)) throw notFound('Permit not found');
  const doc = (await models.Permit.findById(id).lean()) as PermitDoc | null;
  if (!doc || !inScope(who, doc.project_id)) throw notFound('Permit not found');
  return settledPermit(models, doc);
}

/** `doc` as read, after completing the effects a crashed transition left pending on it (past their grace). */
export async function settledPermit(models: Models, doc: PermitDoc): Promise<PermitDoc> {
  if (doc.pending && Date.now() - new Date((doc.pending as PendingEffects).at).getTime() >= PENDING_GRACE_MS) await completeEffects(models, doc);
  return doc;
}

/** The projects a caller may filter on: their own (service tokens: any). */
function projectFilter(who: Principal, requested?: string): Record<string, unknown> {
  if (requested) return who.role === 'service' || who.project_ids.includes(requested) ? { project_id: requested } : { project_id: { $in: [] } };
  return who.role === 'service' ? {} : { project_id: { $in: who.project_ids } };
}

function escapeRegex(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
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

/**
 * The statuses each project's parts ask for, when the query is nothing but projects and statuses
 * (`'all'` for a project without a status filter); undefined when any part filters on more.
 * What the registration order and the block readings (status-blocks.ts) can answer alone.
 */
export function statusesByProject(parts: Record<string, unknown>[]): Map<string, string[] | 'all'> | undefined {
  const out = new Map<string, string[] | 'all'>();
  for (const q of parts) {
    const keys = Object.keys(q);
    if (typeof q.project_id !== 'string') return undefined;
    if (keys.length === 1) out.set(q.project_id, 'all');
    else if (keys.length === 2 && typeof q.status === 'string') {
      const have = out.get(q.project_id);
      if (have !== 'all') out.set(q.project_id, [...(have ?? []), q.status]);
    } else return undefined;
  }
  return out;
}

/** Permit lists' order: newest first, `_id` breaking ties (filtered lists, and several projects' heads merged). */
export const NEWEST_FIRST = { created_at: -1, _id: -1 } as const;

function newerFirst(a: PermitDoc, b: PermitDoc): number {
  const t = new Date(b.created_at as Date).getTime() - new Date(a.created_at as Date).getTime();
  if (t !== 0) return t;
  const x = String(a._id);
  const y = String(b._id);
  return x < y ? 1 : x > y ? -1 : 0;
}

export interface ListOptions {
  /**
   * Serve the default list by registration order (registration.ts), status and `q` lists by block
   * readings (status-blocks.ts, text-blocks.ts): right where the store pushes equality down to an
   * index (MongoDB, FerretDB on PostgreSQL); on FerretDB's SQLite backend, which pushes down only
   * `_id`, every query scans, so fewer queries win there.
   */
  byPlace?: boolean;
}

/** Deepest result (page × page_size) merged from several projects' registration orders. */
export const MERGE_MAX_DEPTH = 200;

/**
 * One page of the caller's permits, newest first. With no filter but the caller's projects, a
 * project's page is read by place (registration.ts: the count is the last place, the page the
 * places it covers), and several projects' heads are merged by creation time. Filtered by status
 * only, the same by the blocks' status readings (status-blocks.ts); searched by `q` (with or
 * without statuses), by the blocks' text readings (text-blocks.ts). Otherwise each part
 * of the query (see {@link permitQueryParts}) is counted and read up to the page's depth in
 * parallel; the parts are disjoint, so the counts add up and the page is the merged head.
 */
export async function listPermits(models: Models, who: Principal, filter: PermitFilterInput, page: number, pageSize: number, opts: ListOptions = {}) {
  if (!Number.isInteger(page) || page < 1) throw invalidArgument('page: expected an integer ≥ 1', { field: 'page' });
  if (!Number.isInteger(pageSize) || pageSize < 1 || pageSize > 100) throw invalidArgument('page_size: expected an integer from 1 to 100', { field: 'page_size' });
  if (page * pageSize > MAX_LIST_DEPTH) {
    throw invalidArgument(`page: only the first ${MAX_LIST_DEPTH} results can be listed (page × page_size); narrow the filters`, { field: 'page' });
  }
  const parts = permitQueryParts(who, filter);
  const skip = (page - 1) * pageSize;
  const plainProjects = parts.every((q) => Object.keys(q).length === 1 && typeof q.project_id === 'string');
  if ((opts.byPlace ?? true) && parts.length > 0 && plainProjects) {
    if (parts.length === 1) {
      const { count, docs } = await registeredPage(models, parts[0].project_id as string, skip, pageSize);
      return { count, results: docs.map((d) => toPermitMessage(d)) };
    }
    if (skip + pageSize <= MERGE_MAX_DEPTH) {
      const heads = await Promise.all(parts.map((q) => registeredPage(models, q.project_id as string, 0, skip + pageSize)));
      const docs = heads
        .flatMap((h) => h.docs as unknown as PermitDoc[])
        .sort(newerFirst)
        .slice(skip, skip + pageSize);
      return { count: heads.reduce((a, h) => a + h.count, 0), results: docs.map((d) => toPermitMessage(d)) };
    }
  }
  const asked = (opts.byPlace ?? true) && parts.length > 0 ? statusesByProject(parts) : undefined;
  const byStatus = asked && [...asked.values()].every((s) => s !== 'all') ? (asked as Map<string, string[]>) : undefined;
  if (byStatus) {
    if (byStatus.size === 1) {
      const [[project, statuses]] = [...byStatus];
      const { count, docs } = await statusPage(models, project, statuses, skip, pageSize);
      return { count, results: docs.map((d) => toPermitMessage(d)) };
    }
    if (skip + pageSize <= MERGE_MAX_DEPTH) {
      const heads = await Promise.all([...byStatus].map(([project, statuses]) => statusPage(models, project, statuses, 0, skip + pageSize)));
      const docs = heads
        .flatMap((h) => h.docs as unknown as PermitDoc[])
        .sort(newerFirst)
        .slice(skip, skip + pageSize);
      return { count: heads.reduce((a, h) => a + h.count, 0), results: docs.map((d) => toPermitMessage(d)) };
    }
  }
  const searched = (opts.byPlace ?? true) && parts.length > 0 ? searchesByProject(parts) : undefined;
  if (searched) {
    const { pattern, byProject } = searched;
    if (byProject.size === 1) {
      const [[project, statuses]] = [...byProject];
      const { count, docs } = await searchPage(models, project, statuses, pattern, skip, pageSize);
      return { count, results: docs.map((d) => toPermitMessage(d)) };
    }
    if (skip + pageSize <= MERGE_MAX_DEPTH) {
      const heads = await Promise.all([...byProject].map(([project, statuses]) => searchPage(models, project, statuses, pattern, 0, skip + pageSize)));
      const docs = heads
        .flatMap((h) => h.docs)
        .sort(newerFirst)
        .slice(skip, skip + pageSize);
      return { count: heads.reduce((a, h) => a + h.count, 0), results: docs.map((d) => toPermitMessage(d)) };
    }
  }
  if ((opts.byPlace ?? true) && parts.length > 0) return matchedPage(models, parts, skip, pageSize);
  if (parts.length <= 1) {
    const q = parts[0];
    if (!q) return { count: 0, results: [] };
    const [count, docs] = await Promise.all([models.Permit.countDocuments(q), models.Permit.find(q).sort(NEWEST_FIRST).skip(skip).limit(pageSize).lean()]);
    return { count, results: docs.map((d) => toPermitMessage(d)) };
  }
  const [counts, heads] = await Promise.all([
    Promise.all(parts.map((q) => models.Permit.countDocuments(q))),
    // One reply per part (the driver's first batch is otherwise 101 documents).
    Promise.all(
      parts.map(
        (q) =>
          models.Permit.find(q)
            .sort(NEWEST_FIRST)
            .limit(skip + pageSize)
            .batchSize(skip + pageSize)
            .lean() as Promise<PermitDoc[]>,
      ),
    ),
  ]);
  const docs = heads
    .flat()
    .sort(newerFirst)
    .slice(skip, skip + pageSize);
  return { count: counts.reduce((a, b) => a + b, 0), results: docs.map((d) => toPermitMessage(d)) };
}

/**
 * The `q` search and the statuses each project's parts ask for, when the query is nothing but
 * projects, statuses and `q` (permitQuery's `$or` of one escaped pattern); what the text readings
 * (text-blocks.ts) can answer alone. The pattern is the store query's, with Unicode case folding.
 */
export function searchesByProject(parts: Record<string, unknown>[]): { pattern: RegExp; byProject: Map<string, string[] | 'all'> } | undefined {
  let source: string | undefined;
  const rest: Record<string, unknown>[] = [];
  for (const { $or, ...others } of parts) {
    const first = Array.isArray($or) ? ($or[0] as { title?: { $regex?: unknown } } | undefined) : undefined;
    const rx = first?.title?.$regex;
    if (typeof rx !== 'string' || (source !== undefined && rx !== source)) return undefined;
    source = rx;
    rest.push(others);
  }
  const byProject = statusesByProject(rest);
  return source === undefined || !byProject ? undefined : { pattern: new RegExp(source, 'iu'), byProject };
}

/** What a filtered list reads of each match: its place in {@link NEWEST_FIRST}. */
const ORDER_KEYS = { _id: 1, created_at: 1 } as const;
const KEYS_PER_REPLY = 10_000;

/**
 * A page of a filter the store cannot bound (`q`, type, dates): it reads every permit of the
 * equality parts whatever is asked of it (FerretDB decodes each to filter, count or sort it), so
 * each part is read once, for its matches' ids and creation times only — their number is the count,
 * their order the page — and the page's permits are then read by id. A project's part without a
 * status is read as one part per status while there are few parts: the same permits, decoded by the store in
 * parallel queries instead of one.
 */
async function matchedPage(models: Models, parts: Record<string, unknown>[], skip: number, pageSize: number) {
  const byStatus = parts.length * PERMIT_STATUSES.length <= MAX_SPLIT_QUERIES;
  const reads = parts.flatMap((q) => (byStatus && q.status === undefined && typeof q.project_id === 'string' ? PERMIT_STATUSES.map((status) => ({ ...q, status })) : [q]));
  // Keys are small: one reply carries up to KEYS_PER_REPLY of them (the driver's first batch is otherwise 101).
  const keys = (await Promise.all(reads.map((q) => models.Permit.find(q, ORDER_KEYS).batchSize(KEYS_PER_REPLY).lean()))).flat() as unknown as PermitDoc[];
  const shown = keys.sort(newerFirst).slice(skip, skip + pageSize);
  const docs = await Promise.all(shown.map((k) => models.Permit.findById(k._id).lean()));
  // A permit is shown as it is now (it may have changed since it matched; one removed meanwhile is left out).
  return { count: keys.length, results: (docs.filter((d) => d !== null) as unknown as PermitDoc[]).map((d) => toPermitMessage(d)) };
}
