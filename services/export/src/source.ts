/**
 * Which permits an export covers (SPEC §7), and the records the renderers need, loaded in batches
 * from a cursor so that only one batch is in memory whatever the number of permits.
 */
import { hasRole, inScope, invalidArgument, notFound, permissionDenied, type Principal } from '@ptw/common';
import { findEach, type Models } from '@ptw/db';
import { permitQueryParts, projectCount, statusesByProject, statusPage } from '@ptw/domain';
import type { exportPb } from '@ptw/proto';
import type { ExportPermit } from './render';

const BATCH = 50;

interface Selected {
  _id: unknown;
  permit_number: string;
  project_id: string;
}

/**
 * The exact number of permits a filter selects when the store can tell without reading them: a
 * project's last place (registration order) or its block status readings (@ptw/domain
 * status-blocks.ts); undefined for other filters (`q`, type, dates, many projects).
 */
async function knownCount(models: Models, parts: Record<string, unknown>[]): Promise<number | undefined> {
  const byProject = statusesByProject(parts);
  if (!byProject) return undefined;
  const counts = await Promise.all(
    [...byProject].map(([project, statuses]) => (statuses === 'all' ? projectCount(models, project) : statusPage(models, project, statuses, 0, 0).then((r) => r.count))),
  );
  return counts.reduce((a, b) => a + b, 0);
}

const tooMany = (count: number | undefined, limit: number) =>
  invalidArgument(`Too many permits to export: ${count === undefined ? `more than ${limit}` : count} selected, the limit is ${limit}. Narrow the selection.`, {
    count: count ?? limit + 1,
    limit,
  });

/**
 * The permits an export request covers, as ids in permit-number order, counted after scoping;
 * refuses too many or none. Explicit ids are read one `_id` equality each (a `$in` would read the
 * whole collection on FerretDB); filters are read per (project, status) part without a sort, and
 * at most limit + 1 ids are read in all, so a refusal costs a page of ids, not the selection — or
 * nothing but the count, when the filter is only projects and statuses (knownCount).
 */
export async function selectPermits(models: Models, who: Principal, req: exportPb.BulkExportRequest, limit: number): Promise<{ ids: string[]; count: number }> {
  if (!hasRole(who, 'manager')) throw permissionDenied('Only managers may export permits');
  const parts = permitQueryParts(who, req.filter ?? {});
  const fields = { _id: 1, permit_number: 1, project_id: 1 };
  const picked: Selected[] = [];
  if (req.permit_ids.length && !req.use_filters) {
    // Only the scope part of the filters applies to an explicit id list; ids of other projects drop out.
    const project = req.filter?.project || undefined;
    const ids = [...new Set(req.permit_ids)].filter((id) => /^[0-9a-f]{24}$/i.test(id));
    for (let i = 0; i < ids.length && picked.length <= limit; i += limit + 1) {
      const found = await findEach<Selected>(models.Permit, '_id', ids.slice(i, i + limit + 1), { projection: fields });
      picked.push(...found.filter((p) => inScope(who, p.project_id) && (!project || p.project_id === project)));
    }
  } else {
    // An over-limit selection the store can count without reading it is refused at once, with its count.
    const known = parts.length ? await knownCount(models, parts) : undefined;
    if (known !== undefined && known > limit) throw tooMany(known, limit);
    for (const q of parts) {
      if (picked.length > limit) break;
      picked.push(
        ...((await models.Permit.find(q, fields)
          .limit(limit + 1 - picked.length)
          .lean()) as unknown as Selected[]),
      );
    }
  }
  const count = picked.length;
  if (count > limit) throw tooMany(undefined, limit);
  if (count === 0) throw notFound('No permits match the export selection');
  picked.sort((a, b) => (a.permit_number < b.permit_number ? -1 : a.permit_number > b.permit_number ? 1 : 0));
  return { ids: picked.map((p) => String(p._id)), count };
}

// eslint-disable-next-line @typescript-eslint/no-explicit-any -- lean documents of several collections, grouped and mapped field by field
type Lean = Record<string, any>;
/* eslint-disable @typescript-eslint/no-unsafe-assignment, @typescript-eslint/no-unsafe-argument, @typescript-eslint/no-unsafe-member-access, @typescript-eslint/no-unsafe-return -- the related documents are read lean (Lean) and grouped by field: ExportPermit, the type these functions return, is the check */

function groupBy<T extends Lean>(docs: T[], key: string): Map<string, T[]> {
  const m = new Map<string, T[]>();
  for (const d of docs) {
    const k = String(d[key]);
    const list = m.get(k);
    if (list) list.push(d);
    else m.set(k, [d]);
  }
  return m;
}

/** Loads the related documents of one batch of permits with one query per collection. */
async function enrich(models: Models, permits: Lean[], typeCache: Map<string, Lean>, projectCache: Map<string, string>): Promise<ExportPermit[]> {
  const ids = permits.map((p) => String(p._id));
  const missingTypes = [...new Set(permits.map((p) => p.permit_type_id))].filter((t) => !typeCache.has(t));
  const missingProjects = [...new Set(permits.map((p) => p.project_id))].filter((t) => !projectCache.has(t));
  // One equality query per permit and collection (see findEach): each costs what it returns.
  const [types, projects, steps, points, closeouts, audit] = await Promise.all([
    findEach<Lean>(models.PermitType, '_id', missingTypes),
    findEach<Lean>(models.Project, '_id', missingProjects),
    findEach<Lean>(models.WorkflowStep, 'permit_id', ids, { sort: { started_at: 1 } }),
    findEach<Lean>(models.IsolationPoint, 'permit_id', ids, { sort: { _id: 1 } }),
    findEach<Lean>(models.Closeout, 'permit_id', ids),
    findEach<Lean>(models.AuditEvent, 'permit_id', ids, { sort: { at: 1, _id: 1 } }),
  ]);
  for (const t of types) typeCache.set(String(t._id), t);
  for (const p of projects) projectCache.set(String(p._id), p.name);
  for (const p of missingProjects) if (!projectCache.has(p)) projectCache.set(p, p);
  const userIds = new Set<string>();
  for (const p of permits) for (const k of ['created_by', 'verifier_id', 'approver_id']) if (p[k]) userIds.add(p[k]);
  for (const a of audit) userIds.add(a.user_id);
  for (const pt of points) for (const k of ['isolated_by', 'verified_by', 'deisolated_by'] as const) if (pt[k]) userIds.add(pt[k] as string);
  const users = await findEach<Lean>(models.User, '_id', [...userIds], { projection: { name: 1 } });
  const userNames = Object.fromEntries(users.map((u) => [String(u._id), u.name]));
  const stepsBy = groupBy(steps, 'permit_id');
  const pointsBy = groupBy(points, 'permit_id');
  const auditBy = groupBy(audit, 'permit_id');
  const closeoutBy = new Map(closeouts.map((c) => [String(c.permit_id), c]));
  return permits.map((p) => {
    const id = String(p._id);
    const type = typeCache.get(p.permit_type_id);
    const c = closeoutBy.get(id);
    const items = (type?.closeout_items ?? []) as { key: string; label: string; required: boolean }[];
    return {
      ...(p as ExportPermit),
      id,
      description: p.description ?? '',
      location: p.location ?? '',
      control_measures: p.control_measures ?? '',
      ppe_requirements: p.ppe_requirements ?? [],
      safety_checklist: p.safety_checklist ?? {},
      project_name: projectCache.get(p.project_id),
      user_names: userNames,
      permit_type_name: type?.name ?? p.permit_type_id,
      workflow_steps: (stepsBy.get(id) ?? []) as unknown as ExportPermit['workflow_steps'],
      isolation_points: (pointsBy.get(id) ?? []) as unknown as ExportPermit['isolation_points'],
      closeout: c
        ? {
            checklist: Object.fromEntries(
              items.map((i) => {
                const s = (c.checklist ?? {})[i.key] ?? {};
                return [i.key, { label: i.label, required: i.required, done: !!s.done, comments: s.comments ?? '', by: s.by, at: s.at }];
              }),
            ),
            remarks: c.remarks,
            completed: !!c.completed,
            completed_at: c.completed_at,
            completed_by: c.completed_by,
          }
        : undefined,
      audit: (auditBy.get(id) ?? []) as unknown as ExportPermit['audit'],
    };
  });
}

/* eslint-enable @typescript-eslint/no-unsafe-assignment, @typescript-eslint/no-unsafe-argument, @typescript-eslint/no-unsafe-member-access, @typescript-eslint/no-unsafe-return */

/** The selected permits as export records, in the order of `ids`, one batch in memory at a time. */
export async function* exportRecords(models: Models, ids: string[], signal?: AbortSignal): AsyncGenerator<ExportPermit> {
  const typeCache = new Map<string, Lean>();
  const projectCache = new Map<string, string>();
  for (let i = 0; i < ids.length; i += BATCH) {
    if (signal?.aborted) return;
    const slice = ids.slice(i, i + BATCH);
    const byId = new Map((await findEach<Lean>(models.Permit, '_id', slice)).map((p) => [String(p._id), p]));
    // A permit gone since the selection is left out.
    const batch = slice.map((id) => byId.get(id)).filter((p): p is Lean => !!p);
    if (signal?.aborted) return;
    yield* await enrich(models, batch, typeCache, projectCache);
  }
}
