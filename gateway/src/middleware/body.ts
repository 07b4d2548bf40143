import type { Context } from 'koa';
import type { IncomingMessage } from 'node:http';
import zlib from 'node:zlib';
import { HttpError } from '../errors';

const METHODS_WITH_BODY = new Set(['POST', 'PUT', 'PATCH']);

/** No API document nests deeper; deeper input would only exhaust recursive encoders downstream. */
export const MAX_DEPTH = 32;

/** True when `value` nests objects/arrays more than `max` levels (iterative: no recursion on input). */
function depthOver(value: unknown, max: number): boolean {
  const stack: [unknown, number][] = [[value, 0]];
  while (stack.length) {
    const [v, d] = stack.pop()!;
    if (v === null || typeof v !== 'object') continue;
    if (d >= max) return true;
    for (const child of Array.isArray(v) ? v : Object.values(v)) stack.push([child, d + 1]);
  }
  return false;
}

/**
 * How long, and how much more, a client still sending a refused body is read before its connection is
 * cut: long enough for a client that stops once it sees the answer, short enough to bound the work an
 * endless body costs.
 */
export const DRAIN_MAX_MS = 5000;
export const DRAIN_MAX_BYTES = 16 * 1024 * 1024;

type Inflate = (buf: Buffer, opts: zlib.ZlibOptions & zlib.BrotliOptions, cb: (err: Error | null, out: Buffer) => void) => void;

/** Content-Encodings a body may arrive in; `x-gzip` is gzip (RFC 9110 §8.4.1.3). */
const INFLATERS: Record<string, Inflate> = { gzip: zlib.gunzip, 'x-gzip': zlib.gunzip, br: zlib.brotliDecompress };

/**
 * Reads a JSON body of at most `limit` bytes — counted after decompression for a gzip or brotli
 * `Content-Encoding`, so a small bomb is refused like a large body: over it → 413, another encoding
 * → 415, not JSON → 400, non-object → 400. An empty body is `{}`. The body is stored on
 * `ctx.request.body`, its (decoded) size on `ctx.state.bodyBytes`.
 */
export function jsonBody(limit: number) {
  return async (ctx: Context, next: () => Promise<void>) => {
    if (!METHODS_WITH_BODY.has(ctx.method)) return next();
    // Node lower-cases header names: read them directly (ctx.get lower-cases the name each time).
    const encoding = ctx.headers['content-encoding']?.trim().toLowerCase();
    const inflate = encoding && encoding !== 'identity' ? INFLATERS[encoding] : undefined;
    if (encoding && encoding !== 'identity' && !inflate) {
      // RFC 9110 §12.5.3: a 415's Accept-Encoding names the codings a request may use.
      const err = new HttpError(
        415,
        'unsupported_content_encoding',
        'Request body must be sent as identity, gzip or br',
        { supported: ['identity', 'gzip', 'br'] },
        { 'Accept-Encoding': 'gzip, br' },
      );
      throw refuse(ctx.req, err);
    }
    const declared = Number(ctx.headers['content-length'] || 0);
    if (declared > limit) throw refuse(ctx.req, tooLarge(limit));
    let raw = await readBody(ctx.req, limit);
    if (inflate && raw.length > 0) raw = await inflated(inflate, raw, limit);
    const size = raw.length;
    const text = raw.toString('utf8');
    let body: unknown = {};
    if (text.trim() !== '') {
      const type = ctx.headers['content-type'];
      if (type && !/^application\/([\w.+-]+\+)?json\b/i.test(type)) {
        throw new HttpError(415, 'unsupported_media_type', 'Request body must be application/json');
      }
      try {
        body = JSON.parse(text);
      } catch {
        throw new HttpError(400, 'invalid_json', 'Request body is not valid JSON');
      }
    }
    if (depthOver(body, MAX_DEPTH)) throw new HttpError(400, 'invalid_body', `Request body nests deeper than ${MAX_DEPTH} levels`);
    if (body === null || typeof body !== 'object' || Array.isArray(body)) {
      throw new HttpError(400, 'invalid_body', 'Request body must be a JSON object');
    }
    (ctx.request as unknown as { body: unknown }).body = body;
    (ctx.state as { bodyBytes?: number }).bodyBytes = size;
    return next();
  };
}

/** `raw` decoded, or 413 as soon as the output passes `limit` (zlib stops there: a bomb is never inflated). */
function inflated(inflate: Inflate, raw: Buffer, limit: number): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    inflate(raw, { maxOutputLength: limit }, (err, out) => {
      if (!err) return resolve(out);
      if ((err as NodeJS.ErrnoException).code === 'ERR_BUFFER_TOO_LARGE') return reject(tooLarge(limit));
      reject(new HttpError(400, 'invalid_body', 'Request body does not decode with its Content-Encoding'));
    });
  });
}

/**
 * The body, or 413 past `limit` bytes. Events rather than `for await`: an async iterator costs
 * several promises per request.
 */
function readBody(req: IncomingMessage, limit: number): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    let settled = false;
    const fail = (err: Error) => {
      if (settled) return;
      settled = true;
      reject(err);
    };
    const onData = (chunk: Buffer) => {
      size += chunk.length;
      if (size <= limit) {
        chunks.push(chunk);
        return;
      }
      req.off('data', onData);
      chunks.length = 0;
      fail(refuse(req, tooLarge(limit)));
    };
    req.on('data', onData);
    req.once('end', () => {
      if (settled) return;
      settled = true;
      resolve(chunks.length === 1 ? chunks[0] : Buffer.concat(chunks, size));
    });
    req.once('error', fail);
    // 'close' also follows every complete request: no error (and its stack) unless it came first.
    req.once('close', () => settled || fail(new Error('request closed before its body was read')));
  });
}

/**
 * `err`, for a request whose body will not be read: the rest of the body is read and dropped so that
 * a client still sending (a chunked body has no length to refuse up front) gets the answer rather
 * than a reset connection. Past DRAIN_MAX_BYTES or DRAIN_MAX_MS the connection is cut.
 */
function refuse(req: IncomingMessage, err: HttpError): HttpError {
  if (req.complete) return err;
  let drained = 0;
  const cut = () => req.destroy();
  const timer = setTimeout(cut, DRAIN_MAX_MS).unref();
  const stop = () => clearTimeout(timer);
  req.on('data', (chunk: Buffer) => {
    drained += chunk.length;
    if (drained > DRAIN_MAX_BYTES) cut();
  });
  req.once('end', stop);
  req.once('close', stop);
  req.resume();
  return err;
}

function tooLarge(limit: number): HttpError {
  return new HttpError(413, 'payload_too_large', `Request body exceeds ${limit} bytes`, { limit_bytes: limit });
}
