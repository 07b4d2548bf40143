import { canManage, implement, permissionDenied, type ServiceRuntime } from '@ptw/common';
import type { Models } from '@ptw/db';
import * as d from '@ptw/domain';
import { workflowPb } from '@ptw/proto';
import type { WorkflowConfig } from './config';
import type { JobsHandle } from './jobs';

/** gRPC handlers of the workflow service: thin adapters over @ptw/domain. */
export function workflowHandlers(models: Models, rt: ServiceRuntime<WorkflowConfig>, jobs: JobsHandle) {
  return implement(
    workflowPb.WorkflowServiceService,
    {
      listPermitTypes: async () => {
        const types = await models.PermitType.find({ active: true }).sort({ name: 1 }).lean();
        return {
          results: types.map((t) => ({
            id: String(t._id),
            name: t.name,
            category: t.category,
            risk_level: t.risk_level,
            validity_hours: t.validity_hours,
            escalation_hours: t.escalation_hours,
            requires_isolation: t.requires_isolation,
            closeout_items: t.closeout_items.map((i) => ({ key: i.key ?? '', label: i.label ?? '', required: !!i.required })),
          })),
        };
      },
      listPermits: (req, ctx) => d.listPermits(models, ctx.principal, req.filter ?? {}, req.page || 1, req.page_size || 20, { byPlace: rt.config.PTW_STORE_BACKEND !== 'sqlite' }),
      createPermit: async (req, ctx) => d.toPermitMessage(await d.createPermit(models, ctx.principal, req.data)),
      getPermit: async (req, ctx) => d.toPermitMessage(await d.getScopedPermit(models, ctx.principal, req.id)),
      updatePermit: async (req, ctx) => d.toPermitMessage(await d.updatePermit(models, ctx.principal, req.id, req.version, req.changes)),
      transitionPermit: async (req, ctx) => d.toPermitMessage(await d.transitionPermit(models, ctx.principal, req.id, req.status, req.comments)),
      getIsolation: (req, ctx) => d.getIsolation(models, ctx.principal, req.permit_id),
      assignIsolation: (req, ctx) => d.assignIsolation(models, ctx.principal, req.permit_id, req.points),
      updateIsolation: (req, ctx) =>
        d.updateIsolation(models, ctx.principal, req.permit_id, {
          point_id: req.point_id,
          action: req.action,
          lock_ids: req.lock_ids.length ? req.lock_ids : undefined,
          notes: req.notes || undefined,
        }),
      getCloseout: (req, ctx) => d.getCloseout(models, ctx.principal, req.permit_id),
      updateCloseout: (req, ctx) =>
        d.updateCloseout(models, ctx.principal, req.permit_id, {
          ...(Object.keys(req.checklist).length ? { checklist: req.checklist } : {}),
          ...(req.remarks !== undefined ? { remarks: req.remarks } : {}),
        }),
      completeCloseout: (req, ctx) => d.completeCloseout(models, ctx.principal, req.permit_id),
      myTasks: async (_req, ctx) => ({ results: await d.myTasks(models, ctx.principal) }),
      listNotifications: (req, ctx) => d.listNotifications(models, ctx.principal, req.page || 1, req.page_size || 20, req.unread_only),
      unreadNotificationCount: (_req, ctx) => d.unreadCount(models, ctx.principal),
      markNotificationRead: (req, ctx) => d.markRead(models, ctx.principal, req.id),
      markAllNotificationsRead: (_req, ctx) => d.markAllRead(models, ctx.principal),
      getWorkflowStats: async (_req, ctx) => {
        if (!canManage(ctx.principal)) throw permissionDenied();
        const now = new Date();
        const [overdue_verification, overdue_approval] = await Promise.all([
          models.Permit.countDocuments(d.overdueVerificationQuery(rt.config, now)),
          models.Permit.countDocuments(d.overdueApprovalQuery(rt.config, now)),
        ]);
        return { overdue_verification, overdue_approval, jobs: await jobs.jobStates() };
      },
      listJobs: async (_req, ctx) => {
        if (!canManage(ctx.principal)) throw permissionDenied();
        return jobs.listJobs();
      },
      runJob: async (req, ctx) => {
        if (!canManage(ctx.principal)) throw permissionDenied();
        return jobs.runNow(req.name);
      },
    },
    rt,
  );
}
