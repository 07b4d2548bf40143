/**
 * Which permits an export covers (SPEC §7), and the records the renderers need, loaded in batches
 * from a cursor so that only one batch is in memory whatever the number of permits.
 */
import { hasRole, invalidArgument, notFound, permissionDenied, type Principal } from '@ptw/common';
import type { Models } from '@ptw/db';
import { permitQuery, type PermitFilterInput } from '@ptw/domain';
import type { exportPb } from '@ptw/proto';
import type { ExportPermit } from './render';

const BATCH = 50;

/** The store query for an export request, counted after scoping; refuses too many or none. */
export async function selectPermits(models: Models, who: Principal, req: exportPb.BulkExportRequest, limit: number): Promise<{ query: Record<string, unknown>; count: number }> {
  if (!hasRole(who, 'manager')) throw permissionDenied('Only managers may export permits');
  const scoped = permitQuery(who, (req.filter ?? {}) as PermitFilterInput);
  let query = scoped;
  if (req.permit_ids.length && !req.use_filters) {
    const ids = [...new Set(req.permit_ids)].filter((id) => /^[0-9a-f]{24}$/i.test(id));
    // Only the scope part of the filters applies to an explicit id list; ids of other projects drop out.
    query = { project_id: scoped.project_id, _id: { $in: ids } };
    if (scoped.project_id === undefined) delete query.project_id;
  }
  const count = await models.Permit.countDocuments(query);
  if (count > limit) throw invalidArgument(`Too many permits to export: ${count} selected, the limit is ${limit}. Narrow the selection.`, { count, limit });
  if (count === 0) throw notFound('No permits match the export selection');
  return { query, count };
}

// eslint-disable-next-line @typescript-eslint/no-explicit-any
type Lean = Record<string, any>;

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
  const [types, projects, steps, points, closeouts, audit] = await Promise.all([
    missingTypes.length ? models.PermitType.find({ _id: { $in: missingTypes } }).lean() : [],
    missingProjects.length ? models.Project.find({ _id: { $in: missingProjects } }).lean() : [],
    models.WorkflowStep.find({ permit_id: { $in: ids } }).sort({ started_at: 1 }).lean(),
    models.IsolationPoint.find({ permit_id: { $in: ids } }).sort({ _id: 1 }).lean(),
    models.Closeout.find({ permit_id: { $in: ids } }).lean(),
    models.AuditEvent.find({ permit_id: { $in: ids } }).sort({ at: 1, _id: 1 }).lean(),
  ]);
  for (const t of types) typeCache.set(String(t._id), t);
  for (const p of projects) projectCache.set(String(p._id), p.name);
  for (const p of missingProjects) if (!projectCache.has(p)) projectCache.set(p, p);
  const userIds = new Set<string>();
  for (const p of permits) for (const k of ['created_by', 'verifier_id', 'approver_id']) if (p[k]) userIds.add(p[k]);
  for (const a of audit) userIds.add(a.user_id);
  for (const pt of points) for (const k of ['isolated_by', 'verified_by', 'deisolated_by'] as const) if (pt[k]) userIds.add(pt[k] as string);
  const users = await models.User.find({ _id: { $in: [...userIds] } }, { name: 1 }).lean();
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
      workflow_steps: (stepsBy.get(id) ?? []) as ExportPermit['workflow_steps'],
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
      audit: (auditBy.get(id) ?? []) as ExportPermit['audit'],
    };
  });
}

/** The selected permits as export records, in permit-number order, one batch in memory at a time. */
export async function* exportRecords(models: Models, query: Record<string, unknown>, signal?: AbortSignal): AsyncGenerator<ExportPermit> {
  const cursor = models.Permit.find(query).sort({ permit_number: 1 }).lean().cursor({ batchSize: BATCH });
  const typeCache = new Map<string, Lean>();
  const projectCache = new Map<string, string>();
  let batch: Lean[] = [];
  try {
    for await (const doc of cursor) {
      if (signal?.aborted) return;
      batch.push(doc);
      if (batch.length === BATCH) {
        yield* await enrich(models, batch, typeCache, projectCache);
        batch = [];
      }
    }
    if (batch.length && !signal?.aborted) yield* await enrich(models, batch, typeCache, projectCache);
  } finally {
    await cursor.close();
  }
}
