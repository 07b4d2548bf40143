import type { Context } from 'koa';
import { bearerToken, type TokenVerifier } from '@ptw/common';
import { HttpError } from '../errors';
import type { GatewayState } from '../state';

/**
 * Paths answered without a token and without a route pattern: the probes, metrics and the OpenAPI
 * document (openapi/serve.ts; the reference page under /api/docs/ is answered before auth too).
 */
export const PUBLIC_PATHS: ReadonlySet<string> = new Set(['/healthz', '/readyz', '/metrics', '/api/v1/ptw/openapi.json']);

/** Largest Authorization header taken (our tokens are a few hundred bytes); longer → 431. */
export const MAX_AUTHORIZATION_BYTES = 8 * 1024;

/** Requires a valid bearer JWT on every route but the public paths (SPEC §3). */
export function authMiddleware(verify: TokenVerifier) {
  return async (ctx: Context, next: () => Promise<void>) => {
    if (PUBLIC_PATHS.has(ctx.path)) return next();
    const state = ctx.state as GatewayState;
    const header = ctx.headers.authorization;
    if (header && header.length > MAX_AUTHORIZATION_BYTES) {
      throw new HttpError(431, 'header_too_large', `The Authorization header exceeds ${MAX_AUTHORIZATION_BYTES} bytes`, { field: 'authorization', limit_bytes: MAX_AUTHORIZATION_BYTES });
    }
    const token = bearerToken(header || undefined);
    const challenge = { 'WWW-Authenticate': 'Bearer realm="ptw"' };
    if (!token) throw new HttpError(401, 'unauthenticated', 'Authentication credentials were not provided', undefined, challenge);
    try {
      // Most requests carry a token already verified: no promise to wait for then.
      state.principal = verify.cached(token) ?? (await verify(token));
    } catch (err) {
      throw new HttpError(401, 'unauthenticated', (err as Error).message, undefined, challenge);
    }
    state.token = token;
    return next();
  };
}
