import { Writable } from 'node:stream';
import type { ServerWritableStream } from '@grpc/grpc-js';
import type { exportPb } from '@ptw/proto';

/** gRPC messages carry at most this many bytes of the file each. */
const CHUNK = 64 * 1024;

/**
 * A Writable that forwards bytes as `ExportChunk{data}` messages on a server stream and honours
 * its backpressure (waits for 'drain'), so a slow client slows the renderer instead of filling memory.
 */
export function grpcChunkWriter(call: ServerWritableStream<exportPb.BulkExportRequest, exportPb.ExportChunk>): Writable {
  const send = (buf: Buffer, cb: (err?: Error | null) => void) => {
    let offset = 0;
    const next = (): void => {
      while (offset < buf.length) {
        if (call.cancelled) return cb(new Error('export cancelled by the client'));
        const part = buf.subarray(offset, offset + CHUNK);
        offset += part.length;
        if (!call.write({ payload: { $case: 'data', value: part } })) {
          call.once('drain', next);
          return;
        }
      }
      cb();
    };
    next();
  };
  return new Writable({
    highWaterMark: CHUNK,
    write(chunk: Buffer, _enc, cb) {
      send(chunk, cb);
    },
  });
}
