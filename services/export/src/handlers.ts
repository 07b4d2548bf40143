import { canManage, implement, permissionDenied, since24h, type BaseConfig, type ServiceRuntime } from '@ptw/common';
import type { Models } from '@ptw/db';
import { exportPb } from '@ptw/proto';


/** gRPC handlers of the export service; the ones a later issue brings answer UNIMPLEMENTED. */
export function exportHandlers(models: Models, rt: ServiceRuntime<BaseConfig>) {
  return implement(
    exportPb.ExportServiceService,
    {
      getExportStats: async (req, ctx) => {
        if (!canManage(ctx.principal)) throw permissionDenied();
        return { bulk_exports: await models.ExportEvent.countDocuments({ at: { $gte: since24h(req.since) } }) };
      },
    },
    rt,
  );
}
