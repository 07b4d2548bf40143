import type { Context, Middleware, Next } from 'koa';
import { HttpError } from '../errors';
import { DOCS_PATH } from '../openapi/serve';
import { PUBLIC_PATHS } from './auth';

const DOCS_ROOT = DOCS_PATH.slice(0, -1);

/** The public paths that only serve reads: the probes, /metrics, the OpenAPI document and its page. */
export function isReadOnlyPath(path: string): boolean {
  return PUBLIC_PATHS.has(path) || path === DOCS_ROOT || path.startsWith(DOCS_PATH);
}

/**
 * Any method but GET/HEAD on a read-only public path is 405 with `Allow: GET, HEAD`, answered before
 * the body reader (issue 23 item 5): these paths take no token, so an anonymous client could
 * otherwise make the gateway read and parse a body no route wants. The body is never read.
 */
export function readOnlyPaths(): Middleware {
  return (ctx: Context, next: Next) => {
    if (ctx.method === 'GET' || ctx.method === 'HEAD' || !isReadOnlyPath(ctx.path)) return next();
    throw new HttpError(405, 'method_not_allowed', 'Method not allowed on this route', undefined, { Allow: 'GET, HEAD' });
  };
}
