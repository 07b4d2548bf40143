import { canManage, implement, permissionDenied, since24h, type ServiceRuntime } from '@ptw/common';
import type { Models } from '@ptw/db';
import { exportPb } from '@ptw/proto';
import type { ExportConfig } from './config';
import { computeKpis } from './kpis';


/** gRPC handlers of the export service; the ones a later issue brings answer UNIMPLEMENTED. */
export function exportHandlers(models: Models, rt: ServiceRuntime<ExportConfig>) {
  return implement(
    exportPb.ExportServiceService,
    {
      getKpis: async (req, ctx) => {
        const started = Date.now();
        const kpis = await computeKpis(models, ctx.principal, req.project, rt.config);
        ctx.log.info({ event: 'kpis_endpoint', project_id: req.project || undefined, duration_ms: Date.now() - started, outcome: 'ok' }, 'kpis_endpoint');
        return kpis;
      },
      getExportStats: async (req, ctx) => {
        if (!canManage(ctx.principal)) throw permissionDenied();
        return { bulk_exports: await models.ExportEvent.countDocuments({ at: { $gte: since24h(req.since) } }) };
      },
    },
    rt,
  );
}
