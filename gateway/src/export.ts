import { PassThrough } from 'node:stream';
import type { ClientReadableStream } from '@grpc/grpc-js';
import { callMetadata, parseInput } from '@ptw/common';
import type { exportPb } from '@ptw/proto';
import type { Context } from 'koa';
import type { Clients } from './clients';
import { exportBody } from './openapi/requests';
import { body, creds, permitFilter } from './params';

/** Resolves with the metadata message, or rejects with the stream's error if it fails first. */
function firstMessage(call: ClientReadableStream<exportPb.ExportChunk>): Promise<exportPb.ExportMeta> {
  return new Promise((resolve, reject) => {
    const onData = (msg: exportPb.ExportChunk) => {
      cleanup();
      if (msg.payload?.$case === 'meta') resolve(msg.payload.value);
      else reject(new Error('export stream did not start with its metadata'));
    };
    const onError = (err: Error) => {
      cleanup();
      reject(err);
    };
    const onEnd = () => {
      cleanup();
      reject(new Error('export stream ended without data'));
    };
    const cleanup = () => {
      call.off('data', onData);
      call.off('error', onError);
      call.off('end', onEnd);
      call.pause();
    };
    call.on('data', onData);
    call.once('error', onError);
    call.once('end', onEnd);
  });
}

/**
 * POST /permits/bulk_export_{pdf,excel}/: opens the export service's stream; errors before the
 * first byte become the usual JSON error, then the file's chunks are piped to the response with
 * backpressure. A client that disconnects cancels the export in the service.
 */
export function exportRoute(clients: Clients, kind: 'pdf' | 'excel') {
  return async (ctx: Context) => {
    const b = parseInput(exportBody, body(ctx));
    const req = { permit_ids: b.permit_ids, use_filters: b.use_filters, detailed: b.detailed, filter: permitFilter(ctx) };
    const raw = clients.export.raw;
    // No deadline: a large export legitimately streams for minutes; the client's disconnect cancels it.
    const md = callMetadata(creds(ctx));
    const call = kind === 'pdf' ? raw.bulkExportPdf(req, md) : raw.bulkExportExcel(req, md);
    const meta = await firstMessage(call).catch((err: unknown) => {
      call.cancel();
      throw err;
    });
    const out = new PassThrough({ highWaterMark: 256 * 1024 });
    call.on('data', (msg: exportPb.ExportChunk) => {
      if (msg.payload?.$case === 'data' && !out.write(msg.payload.value)) {
        call.pause();
        out.once('drain', () => call.resume());
      }
    });
    call.on('end', () => out.end());
    call.on('error', (err) => out.destroy(err));
    ctx.res.on('close', () => {
      if (!ctx.res.writableFinished) call.cancel();
    });
    ctx.status = 200;
    ctx.type = meta.content_type;
    ctx.attachment(meta.filename);
    ctx.set('X-Permit-Count', String(meta.permit_count));
    ctx.body = out;
    call.resume();
  };
}
