import { canManage, implement, permissionDenied, since24h, type Handlers, type ServiceRuntime } from '@ptw/common';
import { countSince, countSinceEach, recordTally, windowStarts, type Models } from '@ptw/db';
import { exportPb } from '@ptw/proto';
import type { ExportConfig } from './config';
import { readKpis, type KpiSnapshots } from './kpis';
import { exportFilename } from './render/format';
import { exportRecords, selectPermits } from './source';
import { grpcChunkWriter } from './stream';

/** gRPC handlers of the export service; the ones a later issue brings answer UNIMPLEMENTED. */
export function exportHandlers(models: Models, rt: ServiceRuntime<ExportConfig>, kpiSnapshots: KpiSnapshots) {
  const exportsTotal = rt.metrics.counter('ptw_exports_total', 'Bulk exports by type and outcome', ['export_type', 'outcome']);
  const exportedPermits = rt.metrics.counter('ptw_exported_permits_total', 'Permits written into bulk exports', ['export_type']);

  /** One bulk export: select, send metadata, stream the file, record the export event. */
  const bulk =
    (kind: 'pdf' | 'excel'): Handlers<typeof exportPb.ExportServiceService>['bulkExportPdf'] =>
    async (req, ctx, call) => {
      const started = Date.now();
      const exportType = kind === 'pdf' ? 'bulk_export_pdf' : 'bulk_export_excel';
      const { ids, count } = await selectPermits(models, ctx.principal, req, rt.config.PTW_BULK_EXPORT_LIMIT);
      const filename = exportFilename(kind, new Date());
      const contentType = kind === 'pdf' ? 'application/zip' : 'application/vnd.openxmlformats-officedocument.spreadsheetml.sheet';
      call.write({ payload: { $case: 'meta', value: { filename, content_type: contentType, permit_count: count } } });
      let outcome = 'success';
      let result = { permitCount: 0, bytes: 0 };
      try {
        const records = exportRecords(models, ids, ctx.signal);
        const out = grpcChunkWriter(call);
        // The renderers (exceljs, pdfkit, archiver: ~0.4 s of CPU to load) load on the first export, not at every start.
        result =
          kind === 'pdf'
            ? await (await import('./render/zip')).streamPdfZip(records, out, { signal: ctx.signal })
            : await (await import('./render/excel')).streamExcel(records, out, { detailed: req.detailed, signal: ctx.signal });
      } catch (err) {
        outcome = ctx.signal.aborted ? 'cancelled' : 'error';
        throw err;
      } finally {
        const duration = Date.now() - started;
        exportsTotal.inc({ export_type: exportType, outcome });
        exportedPermits.inc({ export_type: exportType }, result.permitCount);
        const at = new Date();
        await models.ExportEvent.create({
          user_id: ctx.principal.user_id,
          project_ids: ctx.principal.project_ids,
          export_type: exportType,
          permit_count: result.permitCount || count,
          bytes: result.bytes,
          duration_ms: duration,
          detailed: req.detailed,
          outcome,
          at,
        });
        await recordTally(models, 'export', { bulk_exports: 1 }, at);
        ctx.log.info({ event: exportType, export_type: exportType, permit_count: result.permitCount, detailed: req.detailed, duration_ms: duration, outcome }, exportType);
      }
    };

  return implement(
    exportPb.ExportServiceService,
    {
      bulkExportPdf: bulk('pdf'),
      bulkExportExcel: bulk('excel'),
      getKpis: async (req, ctx) => {
        const started = Date.now();
        const kpis = await readKpis(models, ctx.principal, req.project, rt.config, kpiSnapshots);
        ctx.log.info({ event: 'kpis_endpoint', project_id: req.project || undefined, duration_ms: Date.now() - started, outcome: 'ok' }, 'kpis_endpoint');
        return kpis;
      },
      getExportStats: async (req, ctx) => {
        if (!canManage(ctx.principal)) throw permissionDenied();
        return { bulk_exports: (await countSince(models, 'export', since24h(req.since))).bulk_exports ?? 0 };
      },
      getExportStatsEach: async (req, ctx) => {
        if (!canManage(ctx.principal)) throw permissionDenied();
        const each = await countSinceEach(models, 'export', windowStarts(req.since_each));
        return { each: each.map((c) => ({ bulk_exports: c.bulk_exports ?? 0 })) };
      },
    },
    rt,
  );
}
