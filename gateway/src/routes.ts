import Router from '@koa/router';
import type { Context } from 'koa';
import type { CallCredentials } from '@ptw/common';
import type { Clients } from './clients';
import { HttpError } from './errors';
import type { GatewayState } from './state';

export const API_PREFIX = '/api/v1/ptw';

/** Credentials to forward on the gRPC call made for this request. */
export function creds(ctx: Context): CallCredentials {
  const s = ctx.state as GatewayState;
  return { token: s.token ?? '', reqId: s.reqId };
}

/** Records the matched route pattern for the access line and metrics. */
function endpoint(ctx: Context): void {
  (ctx.state as GatewayState).endpoint = `${API_PREFIX}${(ctx as unknown as { _matchedRoute?: string })._matchedRoute?.slice(API_PREFIX.length) ?? ''}`;
}

/** The HTTP API of SPEC §4 (routes arrive with the issues that bring their behaviour). */
export function apiRouter(clients: Clients): Router {
  const router = new Router({ prefix: API_PREFIX });
  router.use(async (ctx, next) => {
    endpoint(ctx);
    await next();
  });

  router.get('/permit-types/', async (ctx) => {
    ctx.body = (await clients.workflow.call.listPermitTypes({}, creds(ctx))).results;
  });

  return router;
}

/** JSON 405/501 for known paths with other methods. */
export function allowedMethods(router: Router) {
  return router.allowedMethods({
    throw: true,
    methodNotAllowed: () => new HttpError(405, 'method_not_allowed', 'Method not allowed on this route'),
    notImplemented: () => new HttpError(501, 'not_implemented', 'Method not implemented'),
  });
}
