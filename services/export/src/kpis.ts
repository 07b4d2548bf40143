/**
 * KPIs of SPEC §6 over the caller's projects. {@link computeKpis} computes them exactly; every query has
 * `status` as plain equality (and `project_id` too when the scope is one project), the only filter
 * shape FerretDB's PostgreSQL backend pushes down: each query then reads the permits of one status,
 * never the whole collection. The open statuses with an SLA or a list (submitted, under_review,
 * active) are read once each with a small projection and their figures derived here. The other
 * statuses' counts come from each project's block readings (status-blocks.ts in @ptw/domain: one
 * small document per 25 places), `completed`/`cancelled` today too (the readings count those terminal
 * statuses by the UTC day of `updated_at`); a `$in` scope (past 20 projects) and the service's
 * whole-store scope count every status in the store.
 *
 * The open statuses' reads still decode every permit of those statuses (FerretDB filters and
 * counts in its own memory), so {@link readKpis} serves a snapshot: the KPIs of the same scope (projects
 * and SLAs) computed at most PTW_KPI_MAX_AGE_SECONDS ago, kept in the store for every replica, with
 * `as_of` the time its computation started. A request finding one older than half that age gets it
 * and starts a refresh in the background (one per scope per process), so a scope in steady use is
 * served in one store command and its figures are never older than the maximum age.
 */
import { createHash } from 'node:crypto';
import { hasRole, notFound, permissionDenied, type Principal } from '@ptw/common';
import { upsertRetried, utcDay, type Models } from '@ptw/db';
import { closedSince, iso, statusCounts, type BlockCounts, type SlaConfig } from '@ptw/domain';
import type { exportPb } from '@ptw/proto';

const HOUR = 3600_000;

/** At most this many projects are read one equality scope each; more go to the store as one `$in` scope. */
const MAX_SPLIT_PROJECTS = 20;

/**
 * The scopes the KPI queries run in: one per project (plain equality, which FerretDB pushes down
 * with the status: each query reads one project's permits of one status) while they are few.
 */
function scopes(who: Principal, project: string): Record<string, unknown>[] {
  if (project) {
    if (who.role !== 'service' && !who.project_ids.includes(project)) throw notFound('Project not found');
    return [{ project_id: project }];
  }
  if (who.role === 'service') return [{}];
  const projects = [...new Set(who.project_ids)];
  if (projects.length === 0) return [];
  return projects.length <= MAX_SPLIT_PROJECTS ? projects.map((p) => ({ project_id: p })) : [{ project_id: { $in: projects } }];
}

function startOfDayUtc(now: Date): Date {
  return new Date(Date.UTC(now.getUTCFullYear(), now.getUTCMonth(), now.getUTCDate()));
}

interface OpenPermit {
  _id: unknown;
  permit_number: string;
  title: string;
  status: string;
  project_id: string;
  planned_end_time?: Date | null;
  submitted_at?: Date | null;
  verified_at?: Date | null;
}

function ref(p: OpenPermit, hours: number): exportPb.KpiPermitRef {
  return {
    id: String(p._id),
    permit_number: p.permit_number,
    title: p.title,
    status: p.status,
    project_id: p.project_id,
    planned_end_time: iso(p.planned_end_time),
    hours: Math.round(hours * 100) / 100,
  };
}

const time = (d: Date | null | undefined) => (d ? new Date(d).getTime() : undefined);

function authorize(who: Principal, project: string): Record<string, unknown>[] {
  if (!hasRole(who, 'manager')) throw permissionDenied('Only managers may read KPIs');
  return scopes(who, project);
}

const sumAll = (xs: number[]) => xs.reduce((a, b) => a + b, 0);

/** Computes the KPIs exactly (managers and service callers only). */
export async function computeKpis(models: Models, who: Principal, project: string, sla: SlaConfig, now = new Date()): Promise<exportPb.Kpis> {
  const parts = authorize(who, project);
  const today = startOfDayUtc(now);
  const fields = { permit_number: 1, title: 1, status: 1, project_id: 1, planned_end_time: 1, submitted_at: 1, verified_at: 1 };
  // One reply each (the driver's first batch is 101 documents; a reply is capped at 16 MiB, some
  // 100,000 of these projections), so the command count does not grow with the open permits.
  const open = async (status: string) =>
    (
      await Promise.all(
        parts.map((s) =>
          models.Permit.find({ ...s, status }, fields)
            .batchSize(100_000)
            .lean(),
        ),
      )
    ).flat() as unknown as OpenPermit[];
  // A scope of single projects reads each project's status counts once, from its block readings
  // (@ptw/domain status-blocks.ts: one small document per 25 places, not every permit of a status).
  // The service's whole-store scope, a `$in` scope and a project whose blocks are mostly unread
  // (statusCounts: undefined) count in the store.
  const readings = parts.every((s) => typeof s.project_id === 'string') ? Promise.all(parts.map((s) => statusCounts(models, s.project_id as string))) : undefined;
  /** Summed over the scope's projects: `fromReadings` of a project's readings, else the store's count of `inStore`. */
  const countBy = async (fromReadings: (c: BlockCounts) => number, inStore: Record<string, unknown>) => {
    const byProject = readings ? await readings : [];
    return sumAll(await Promise.all(parts.map(async (s, i) => (byProject[i] ? fromReadings(byProject[i]) : models.Permit.countDocuments({ ...s, ...inStore })))));
  };
  const count = (status: string) => countBy((c) => c.byStatus[status] ?? 0, { status });
  // Completed and cancelled today: the readings count those statuses by the day of `updated_at`
  // (terminal permits are never edited again, so it is the day they closed).
  const closedToday = (status: string) => countBy((c) => closedSince(c, status, utcDay(today)), { status, updated_at: { $gte: today } });

  const [submitted, underReview, active, draft, approved, suspended, expired, rejected, completedToday, cancelledToday, isolationPending] = await Promise.all([
    open('submitted'),
    open('under_review'),
    open('active'),
    count('draft'),
    count('approved'),
    count('suspended'),
    count('expired'),
    count('rejected'),
    closedToday('completed'),
    closedToday('cancelled'),
    Promise.all(parts.map((s) => models.IsolationPoint.countDocuments({ ...s, status: 'isolated' }))).then(sumAll),
  ]);

  const t = now.getTime();
  // Same definitions as the SLA queries of @ptw/domain (health counts with those).
  const verificationDue = t - sla.PTW_VERIFICATION_SLA_HOURS * HOUR;
  const approvalDue = t - sla.PTW_APPROVAL_SLA_HOURS * HOUR;
  const soonUntil = t + sla.PTW_EXPIRING_SOON_HOURS * HOUR;
  const lateVerification = submitted.filter((p) => (time(p.submitted_at) ?? Infinity) < verificationDue);
  const lateApproval = underReview.filter((p) => (time(p.verified_at) ?? Infinity) < approvalDue);
  const expiringSoon = active.filter((p) => {
    const end = time(p.planned_end_time);
    return end !== undefined && end >= t && end <= soonUntil;
  });
  const closeoutPending = active.filter((p) => (time(p.planned_end_time) ?? Infinity) < t).length;
  const overdueHours = (since: Date | null | undefined, slaHours: number) => (t - time(since)!) / HOUR - slaHours;
  const topOverdue = [
    ...lateVerification.map((p) => ref(p, overdueHours(p.submitted_at, sla.PTW_VERIFICATION_SLA_HOURS))),
    ...lateApproval.map((p) => ref(p, overdueHours(p.verified_at, sla.PTW_APPROVAL_SLA_HOURS))),
  ]
    .sort((a, b) => b.hours - a.hours)
    .slice(0, 10);
  const soonest = expiringSoon.sort((a, b) => time(a.planned_end_time)! - time(b.planned_end_time)!).slice(0, 10);
  const openCounts = { draft, submitted: submitted.length, under_review: underReview.length, approved, active: active.length, suspended };

  return {
    as_of: now.toISOString(),
    counts: {
      total_open: Object.values(openCounts).reduce((a, b) => a + b, 0),
      ...openCounts,
      completed_today: completedToday,
      cancelled_today: cancelledToday,
      expired,
      rejected,
    },
    overdue: {
      pending_verification: lateVerification.length,
      pending_approval: lateApproval.length,
      expiring_soon: expiringSoon.length,
      isolation_pending: isolationPending,
      closeout_pending: closeoutPending,
    },
    lists: {
      top_overdue: topOverdue,
      expiring_soon: soonest.map((p) => ref(p, (time(p.planned_end_time)! - t) / HOUR)),
    },
  };
}

export interface KpiOptions extends SlaConfig {
  PTW_KPI_MAX_AGE_SECONDS: number;
}

/**
 * Per process: one computation of a scope at a time, whether a request waits for it or it refreshes
 * the snapshot in the background. The requests that find no fresh snapshot together (a dashboard's
 * first load, a restart) wait for the same one instead of each reading every open permit and racing
 * to save it; a refresh already running is not started again. Awaited on stop.
 */
export class KpiSnapshots {
  private readonly running = new Map<string, Promise<exportPb.Kpis>>();

  constructor(private readonly onError: (err: unknown) => void) {}

  /** The scope's computation now running, or `work` started as it. */
  compute(key: string, work: () => Promise<exportPb.Kpis>): Promise<exportPb.Kpis> {
    let p = this.running.get(key);
    if (!p) {
      p = work().finally(() => this.running.delete(key));
      this.running.set(key, p);
    }
    return p;
  }

  /** {@link compute} in the background: nobody waits, a failure is reported to `onError`. */
  refresh(key: string, work: () => Promise<exportPb.Kpis>): void {
    this.compute(key, work).catch(this.onError);
  }

  async drain(): Promise<void> {
    await Promise.allSettled(this.running.values());
  }
}

/** The snapshot's id: who sees the same permits under the same SLAs shares it. */
function snapshotKey(who: Principal, project: string, cfg: SlaConfig): string {
  const projects = project ? [project] : who.role === 'service' ? ['*'] : [...new Set(who.project_ids)].sort();
  const sla = [cfg.PTW_VERIFICATION_SLA_HOURS, cfg.PTW_APPROVAL_SLA_HOURS, cfg.PTW_EXPIRING_SOON_HOURS];
  return `kpis:${createHash('sha256')
    .update(JSON.stringify([projects, sla]))
    .digest('hex')
    .slice(0, 40)}`;
}

async function computeAndSave(models: Models, who: Principal, project: string, cfg: SlaConfig, key: string): Promise<exportPb.Kpis> {
  const started = Date.now();
  const kpis = await computeKpis(models, who, project, cfg, new Date(started));
  // Two processes may save the scope's first snapshot at once (see upsertRetried).
  await upsertRetried(() => models.KpiSnapshot.updateOne({ _id: key }, { $set: { as_of: new Date(started), data: kpis, compute_ms: Date.now() - started } }, { upsert: true }));
  return kpis;
}

/**
 * The KPIs for a request: a snapshot of the scope at most PTW_KPI_MAX_AGE_SECONDS old, else
 * computed now (and saved); 0 computes on every request. Roles and project scope are checked
 * before anything is read.
 */
export async function readKpis(models: Models, who: Principal, project: string, cfg: KpiOptions, snapshots: KpiSnapshots, now = new Date()): Promise<exportPb.Kpis> {
  authorize(who, project);
  const maxAgeMs = cfg.PTW_KPI_MAX_AGE_SECONDS * 1000;
  if (maxAgeMs === 0) return computeKpis(models, who, project, cfg, now);
  const key = snapshotKey(who, project, cfg);
  const snap = await models.KpiSnapshot.findById(key).lean();
  const age = snap ? now.getTime() - new Date(snap.as_of).getTime() : Infinity;
  // A snapshot from the future (the clock went back) is not trusted either.
  if (!snap || age > maxAgeMs || age < -maxAgeMs) return snapshots.compute(key, () => computeAndSave(models, who, project, cfg, key));
  if (age > maxAgeMs / 2) snapshots.refresh(key, () => computeAndSave(models, who, project, cfg, key));
  return { ...(snap.data as exportPb.Kpis), as_of: new Date(snap.as_of).toISOString() };
}
