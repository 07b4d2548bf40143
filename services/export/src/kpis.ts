/**
 * KPIs of SPEC §6 over the caller's projects: one aggregation for the counts, indexed counts for
 * the overdue figures (same SLA definitions as health), and two short sorted lists.
 */
import { hasRole, notFound, permissionDenied, type Principal } from '@ptw/common';
import type { Models } from '@ptw/db';
import { expiringSoonQuery, iso, overdueApprovalQuery, overdueVerificationQuery, type SlaConfig } from '@ptw/domain';
import type { exportPb } from '@ptw/proto';

const OPEN = ['draft', 'submitted', 'under_review', 'approved', 'active', 'suspended'];
const HOUR = 3600_000;

function scope(who: Principal, project: string): Record<string, unknown> {
  if (project) {
    if (who.role !== 'service' && !who.project_ids.includes(project)) throw notFound('Project not found');
    return { project_id: project };
  }
  return who.role === 'service' ? {} : { project_id: { $in: who.project_ids } };
}

function startOfDayUtc(now: Date): Date {
  return new Date(Date.UTC(now.getUTCFullYear(), now.getUTCMonth(), now.getUTCDate()));
}

// eslint-disable-next-line @typescript-eslint/no-explicit-any
function ref(p: Record<string, any>, hours: number): exportPb.KpiPermitRef {
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

/** Computes the KPIs (managers and service callers only). */
export async function computeKpis(models: Models, who: Principal, project: string, sla: SlaConfig, now = new Date()): Promise<exportPb.Kpis> {
  if (!hasRole(who, 'manager')) throw permissionDenied('Only managers may read KPIs');
  const s = scope(who, project);
  const today = startOfDayUtc(now);
  const fields = { permit_number: 1, title: 1, status: 1, project_id: 1, planned_end_time: 1, submitted_at: 1, verified_at: 1 };

  const [byStatus, completedToday, cancelledToday, pendingVerification, pendingApproval, expiringSoon, isolationPending, closeoutPending, lateVerification, lateApproval, soonest] =
    await Promise.all([
      models.Permit.aggregate<{ _id: string; n: number }>([{ $match: s }, { $group: { _id: '$status', n: { $sum: 1 } } }]),
      models.Permit.countDocuments({ ...s, status: 'completed', updated_at: { $gte: today } }),
      models.Permit.countDocuments({ ...s, status: 'cancelled', updated_at: { $gte: today } }),
      models.Permit.countDocuments({ ...s, ...overdueVerificationQuery(sla, now) }),
      models.Permit.countDocuments({ ...s, ...overdueApprovalQuery(sla, now) }),
      models.Permit.countDocuments({ ...s, ...expiringSoonQuery(sla, now) }),
      models.IsolationPoint.countDocuments({ ...s, status: 'isolated' }),
      models.Permit.countDocuments({ ...s, status: 'active', planned_end_time: { $lt: now } }),
      models.Permit.find({ ...s, ...overdueVerificationQuery(sla, now) }, fields).sort({ submitted_at: 1 }).limit(10).lean(),
      models.Permit.find({ ...s, ...overdueApprovalQuery(sla, now) }, fields).sort({ verified_at: 1 }).limit(10).lean(),
      models.Permit.find({ ...s, ...expiringSoonQuery(sla, now) }, fields).sort({ planned_end_time: 1 }).limit(10).lean(),
    ]);

  const count = (status: string) => byStatus.find((r) => r._id === status)?.n ?? 0;
  const overdueHours = (since: Date | null | undefined, slaHours: number) => (since ? (now.getTime() - new Date(since).getTime()) / HOUR - slaHours : 0);
  const topOverdue = [
    ...lateVerification.map((p) => ref(p, overdueHours(p.submitted_at, sla.PTW_VERIFICATION_SLA_HOURS))),
    ...lateApproval.map((p) => ref(p, overdueHours(p.verified_at, sla.PTW_APPROVAL_SLA_HOURS))),
  ]
    .sort((a, b) => b.hours - a.hours)
    .slice(0, 10);

  return {
    as_of: now.toISOString(),
    counts: {
      total_open: OPEN.reduce((n, st) => n + count(st), 0),
      draft: count('draft'),
      submitted: count('submitted'),
      under_review: count('under_review'),
      approved: count('approved'),
      active: count('active'),
      suspended: count('suspended'),
      completed_today: completedToday,
      cancelled_today: cancelledToday,
      expired: count('expired'),
      rejected: count('rejected'),
    },
    overdue: {
      pending_verification: pendingVerification,
      pending_approval: pendingApproval,
      expiring_soon: expiringSoon,
      isolation_pending: isolationPending,
      closeout_pending: closeoutPending,
    },
    lists: {
      top_overdue: topOverdue,
      expiring_soon: soonest.map((p) => ref(p, (new Date(p.planned_end_time!).getTime() - now.getTime()) / HOUR)),
    },
  };
}
