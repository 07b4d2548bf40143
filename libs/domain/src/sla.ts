import { z } from 'zod';

/** SLA settings shared by the KPIs (export) and health's overdue counts (workflow): one definition. */
export const slaConfigSchema = z.object({
  PTW_VERIFICATION_SLA_HOURS: z.coerce
    .number()
    .positive()
    .max(24 * 365)
    .default(4),
  PTW_APPROVAL_SLA_HOURS: z.coerce
    .number()
    .positive()
    .max(24 * 365)
    .default(4),
  PTW_EXPIRING_SOON_HOURS: z.coerce
    .number()
    .positive()
    .max(24 * 365)
    .default(4),
});
export type SlaConfig = z.infer<typeof slaConfigSchema>;

const HOUR = 3600_000;

/** Submitted permits waiting for verification longer than the SLA (from submitted_at). */
export function overdueVerificationQuery(sla: SlaConfig, now: Date): Record<string, unknown> {
  return { status: 'submitted', submitted_at: { $lt: new Date(now.getTime() - sla.PTW_VERIFICATION_SLA_HOURS * HOUR) } };
}

/** Verified permits waiting for approval longer than the SLA (from verified_at). */
export function overdueApprovalQuery(sla: SlaConfig, now: Date): Record<string, unknown> {
  return { status: 'under_review', verified_at: { $lt: new Date(now.getTime() - sla.PTW_APPROVAL_SLA_HOURS * HOUR) } };
}

/** Active permits whose planned end falls within the expiring-soon window (not yet past). */
export function expiringSoonQuery(sla: SlaConfig, now: Date): Record<string, unknown> {
  return { status: 'active', planned_end_time: { $gte: now, $lte: new Date(now.getTime() + sla.PTW_EXPIRING_SOON_HOURS * HOUR) } };
}
