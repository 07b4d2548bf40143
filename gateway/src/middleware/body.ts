import type { Context, Next } from 'koa';
import type { IncomingMessage } from 'node:http';
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
 * Reads a JSON body up to `limit` bytes: over it → 413, not JSON → 400, non-object → 400. An empty
 * body is `{}`. The body is stored on `ctx.request.body`.
 */
export function jsonBody(limit: number) {
  return async (ctx: Context, next: Next) => {
    if (!METHODS_WITH_BODY.has(ctx.method)) return next();
    // Node lower-cases header names: read them directly (ctx.get lower-cases the name each time).
    const declared = Number(ctx.headers['content-length'] || 0);
    if (declared > limit) throw tooLarge(limit);
    const { text, size } = await readBody(ctx.req, limit);
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

/**
 * The body as text, or 413 past `limit` bytes (the request is then cut off: nothing more of it is
 * read). Events rather than `for await`: an async iterator costs several promises per request.
 */
function readBody(req: IncomingMessage, limit: number): Promise<{ text: string; size: number }> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    let settled = false;
    const fail = (err: Error) => {
      if (settled) return;
      settled = true;
      reject(err);
    };
    req.on('data', (chunk: Buffer) => {
      if (settled) return;
      size += chunk.length;
      if (size > limit) {
        fail(tooLarge(limit));
        req.destroy();
        return;
      }
      chunks.push(chunk);
    });
    req.once('end', () => {
      if (settled) return;
      settled = true;
      resolve({ text: chunks.length === 1 ? chunks[0].toString('utf8') : Buffer.concat(chunks).toString('utf8'), size });
    });
    req.once('error', fail);
    // 'close' also follows every complete request: no error (and its stack) unless it came first.
    req.once('close', () => settled || fail(new Error('request closed before its body was read')));
  });
}

function tooLarge(limit: number): HttpError {
  return new HttpError(413, 'payload_too_large', `Request body exceeds ${limit} bytes`, { limit_bytes: limit });
}
