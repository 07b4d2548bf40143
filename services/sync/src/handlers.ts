import { canManage, implement, invalidArgument, lineWriter, permissionDenied, since24h, type BaseConfig, type ServiceRuntime } from '@ptw/common';
import { countSince, countSinceEach, windowStarts, type Models } from '@ptw/db';
import { syncPb } from '@ptw/proto';
import { syncBatch } from './batch';

const DEVICE_ID = /^[A-Za-z0-9_.:-]{1,128}$/;
export const MAX_CHANGES = 500;

/** gRPC handlers of the sync service. */
export function syncHandlers(models: Models, rt: ServiceRuntime<BaseConfig>) {
  const outcomesTotal = rt.metrics.counter('ptw_sync_outcomes_total', 'Offline sync changes by outcome', ['outcome']);
  // The event line of every request, written without a child logger and bunyan's record building
  // (see lineWriter): with the gRPC call's own line it is all a sync request logs when nothing fails.
  const eventLine = lineWriter(rt.log, 'sync_offline_data');
  return implement(
    syncPb.SyncServiceService,
    {
      syncOfflineData: async (req, ctx) => {
        const started = Date.now();
        if (!DEVICE_ID.test(req.device_id)) throw invalidArgument('device_id: expected 1-128 letters, digits or _.:-', { field: 'device_id' });
        if (req.changes.length > MAX_CHANGES) throw invalidArgument(`changes: at most ${MAX_CHANGES} per request`, { field: 'changes' });
        const { response } = await syncBatch(models, ctx.principal, req, () => ctx.log);
        const s = response.summary!;
        outcomesTotal.inc({ outcome: 'applied' }, s.applied);
        outcomesTotal.inc({ outcome: 'conflict' }, s.conflicts);
        outcomesTotal.inc({ outcome: 'rejected' }, s.rejected);
        eventLine({
          req_id: ctx.reqId,
          user_id: ctx.principal.user_id,
          ...ctx.trace?.fields,
          event: 'sync_offline_data',
          device_id: req.device_id,
          applied_count: s.applied,
          conflict_count: s.conflicts,
          rejected_count: s.rejected,
          duration_ms: Date.now() - started,
          outcome: 'ok',
        });
        return response;
      },
      getSyncStats: async (req, ctx) => {
        if (!canManage(ctx.principal)) throw permissionDenied();
        // Window counts from per-minute and per-hour buckets (see @ptw/db tallies.ts), not a range count of the events.
        const c = await countSince(models, 'sync', since24h(req.since));
        const [applied, conflicts, rejected] = [c.applied ?? 0, c.conflicts ?? 0, c.rejected ?? 0];
        return { applied, conflicts, rejected };
      },
      getSyncStatsEach: async (req, ctx) => {
        if (!canManage(ctx.principal)) throw permissionDenied();
        // The health history's windows in one pass over the buckets (countSinceEach), not one count per window.
        const each = await countSinceEach(models, 'sync', windowStarts(req.since_each));
        return { each: each.map((c) => ({ applied: c.applied ?? 0, conflicts: c.conflicts ?? 0, rejected: c.rejected ?? 0 })) };
      },
    },
    rt,
  );
}
