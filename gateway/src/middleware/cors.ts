import cors from '@koa/cors';
import type { Context, Middleware, Next } from 'koa';
import { z } from 'zod';

/**
 * What a browser on an allowed origin may send and read (issue 23 item 9). No credentials mode: the
 * API authenticates by the Authorization header, never by cookies, so `Access-Control-Allow-
 * Credentials` is never sent (and `*` never allowed).
 */
export const CORS_ALLOW_HEADERS = ['Authorization', 'Content-Type', 'Content-Encoding', 'X-Request-Id', 'traceparent', 'tracestate'];
export const CORS_EXPOSE_HEADERS = ['X-Request-Id', 'Retry-After', 'X-RateLimit-Limit', 'X-RateLimit-Remaining', 'X-RateLimit-Reset', 'Content-Disposition', 'X-Permit-Count'];
export const CORS_ALLOW_METHODS = ['GET', 'HEAD', 'POST', 'PATCH'];
/** How long a browser may reuse a preflight's answer (seconds). */
export const CORS_MAX_AGE = 600;

/** True when `value` is a serialized http(s) origin (`scheme://host[:port]`, nothing more), as browsers send it. */
function isOrigin(value: string): boolean {
  try {
    const url = new URL(value);
    return (url.protocol === 'https:' || url.protocol === 'http:') && url.origin === value;
  } catch {
    return false;
  }
}

/**
 * `PTW_CORS_ORIGINS`: a comma list of exact origins; empty (the default) means no CORS at all. A value
 * that is not an origin exactly as a browser sends it (a path, a trailing slash, upper case, `*`)
 * stops start-up, since it would never match and silently lock out the browser it was meant for.
 */
export const corsOriginsVariable = z
  .string()
  .default('')
  .transform((value, ctx) => {
    const origins = value
      .split(',')
      .map((o) => o.trim())
      .filter(Boolean);
    const bad = origins.filter((o) => !isOrigin(o));
    if (bad.length) {
      ctx.addIssue({
        code: 'custom',
        input: value,
        message: `not an origin: ${bad.map((o) => JSON.stringify(o)).join(', ')} (expected exact origins such as https://app.example.com, comma-separated; * is not allowed)`,
      });
      return z.NEVER;
    }
    return origins;
  });

/**
 * CORS for the API (paths under `prefix`) for the allowed origins only. A preflight from one
 * of them is answered here (204), before auth and throttling: no token, not counted. Any other
 * origin gets no Access-Control-* header at all (its preflight goes on like any OPTIONS request).
 * With no origin allowed nothing is added to any response.
 */
export function corsMiddleware(origins: readonly string[], prefix: string): Middleware {
  const allowed = new Set(origins);
  if (allowed.size === 0) return (_ctx: Context, next: Next) => next();
  const apply = cors({
    origin: (ctx) => {
      const origin = ctx.headers.origin;
      return typeof origin === 'string' && allowed.has(origin) ? origin : '';
    },
    allowMethods: CORS_ALLOW_METHODS,
    allowHeaders: CORS_ALLOW_HEADERS,
    exposeHeaders: CORS_EXPOSE_HEADERS,
    maxAge: CORS_MAX_AGE,
    credentials: false,
    // The request middleware (outside this one) keeps the headers set on the response when it maps
    // an error: the library need not copy them onto the error object.
    keepHeadersOnError: false,
  });
  // eslint-disable-next-line @typescript-eslint/no-unsafe-return -- @koa/cors is a koa-compose Middleware (returns any); Koa only awaits it
  return (ctx: Context, next: Next) => (ctx.path.startsWith(`${prefix}/`) ? apply(ctx, next) : next());
}
