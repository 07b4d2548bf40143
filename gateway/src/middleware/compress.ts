import type { Context, Next } from 'koa';
import compress from 'koa-compress';
import zlib from 'node:zlib';
import { z } from 'zod';
import { booleanVariable } from '@ptw/common';

/**
 * Measured on a 100-permit list page (88 KB, the page of test/e2e/compression.test.ts): gzip 6 makes
 * it 12.3× smaller for 0.67 ms of CPU, brotli 4 11.6× for 0.65 ms (serialising it: 0.2 ms). gzip 1 /
 * brotli 1 cost a third of that for 9×; brotli 5 costs 40% more for 13×. Clients on field networks
 * gain more from the last third of the bytes than the gateway loses in CPU on such pages.
 */
export const GZIP_LEVEL = 6;
export const BROTLI_QUALITY = 4;

/**
 * Larger answers go as they are. Every answer a route builds is far below (a 100-permit page is
 * ~90 KB); above are static files, such as the docs page's 1.7 MB script, which would cost ~45 ms of
 * CPU per anonymous request to compress again and again.
 */
export const COMPRESS_MAX_BYTES = 1024 * 1024;

/** The gateway settings of response compression. */
export const compressionConfigShape = {
  /** Compress answers for clients that send Accept-Encoding (gzip or br); `false` behind a proxy that compresses. */
  PTW_COMPRESS: booleanVariable(true),
  /** Smallest answer worth compressing: below it the headers and the CPU cost more than the bytes saved. */
  PTW_COMPRESS_MIN_BYTES: z.coerce.number().int().min(0).default(1024),
};

/** A body Koa would send as JSON, for the shapes routes set (plain objects and arrays). */
const isPlainJson = (body: unknown): body is object =>
  body !== null && typeof body === 'object' && (Array.isArray(body) || Object.getPrototypeOf(body) === Object.prototype || Object.getPrototypeOf(body) === null);

/**
 * Compresses answers of a compressible type (JSON, text: not the ZIP/XLSX exports, already
 * compressed) of at least `minBytes` for clients that ask (gzip or br). Outermost after the trace
 * context, so error answers are compressed too and every header set inside (X-Request-Id…) stays.
 */
export function compressMiddleware(minBytes: number) {
  const compressing = compress({
    threshold: minBytes,
    gzip: { level: GZIP_LEVEL },
    br: { params: { [zlib.constants.BROTLI_PARAM_QUALITY]: BROTLI_QUALITY } },
    deflate: false,
  });
  return (ctx: Context, next: Next) => {
    // A client that accepts no coding gets identity anyway: skip koa-compress, which would
    // serialise the JSON body once more just to measure it.
    if (!ctx.headers['accept-encoding']) {
      ctx.vary('Accept-Encoding');
      return next();
    }
    // eslint-disable-next-line @typescript-eslint/no-unsafe-return -- koa-compress is a koa-compose Middleware (returns any); Koa only awaits it
    return compressing(ctx, async () => {
      await next();
      // Serialised once here: koa-compress would serialise it to measure it, then again to compress.
      if (isPlainJson(ctx.body)) ctx.body = JSON.stringify(ctx.body);
      // Koa sets the length of every string and Buffer body ('' when unknown: a stream).
      if (Number(ctx.response.get('Content-Length')) > COMPRESS_MAX_BYTES) ctx.compress = false;
    });
  };
}
