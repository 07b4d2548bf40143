import Koa from 'koa';
import { checkHealth, incomingTraceContext } from '@ptw/common';
import { adminConsole, adminRouter, createRejectionRing, recordRejections } from './admin';
import { redisUp, type GatewayDeps } from './deps';
import { authMiddleware } from './middleware/auth';
import { jsonBody } from './middleware/body';
import { compressMiddleware } from './middleware/compress';
import { corsMiddleware } from './middleware/cors';
import { readOnlyPaths } from './middleware/read-only';
import { requestMiddleware } from './middleware/request';
import { docsMiddleware } from './openapi/serve';
import { allowedMethods, API_PREFIX, apiRouter } from './routes';
import type { GatewayState } from './state';
import { createThrottle } from './throttle';

/** Builds the Koa application (no listening: `main.ts` does that, tests use the callback). */
export function createApp(deps: GatewayDeps): Koa {
  const app = new Koa({ proxy: deps.config.PTW_TRUST_PROXY });
  const throttle = createThrottle({ redis: deps.redis, config: deps.config, log: deps.log, metrics: deps.metrics, keyPrefix: deps.config.PTW_THROTTLE_KEY_PREFIX });
  const router = apiRouter(deps.clients, throttle);
  const rejections = createRejectionRing();
  const admin = adminRouter(deps, rejections);
  const services = {
    sync: deps.config.PTW_SYNC_ADDR,
    workflow: deps.config.PTW_WORKFLOW_ADDR,
    export: deps.config.PTW_EXPORT_ADDR,
    health: deps.config.PTW_HEALTH_ADDR,
  };

  // Errors Koa sees outside the request middleware (e.g. a streamed export failing mid-way).
  app.silent = true;
  app.on('error', (err: Error) => deps.log.warn({ err, event: 'response_stream_error' }, 'response stream failed'));
  // The server span's route is the one of the logs and metrics (state.endpoint, set by the routers).
  app.use(incomingTraceContext((ctx) => (ctx.state as unknown as GatewayState).endpoint));
  if (deps.config.PTW_COMPRESS) app.use(compressMiddleware(deps.config.PTW_COMPRESS_MIN_BYTES));
  app.use(requestMiddleware(deps.log, deps.metrics));
  // Preflights are answered here: before auth, throttling and any body.
  app.use(corsMiddleware(deps.config.PTW_CORS_ORIGINS, API_PREFIX));
  app.use(readOnlyPaths());
  app.use(async (ctx, next: () => Promise<void>) => {
    if (ctx.method !== 'GET' && ctx.method !== 'HEAD') return next();
    if (ctx.path === '/healthz') {
      ctx.body = { status: 'ok' };
      return;
    }
    if (ctx.path === '/readyz') {
      const [redis, ...states] = await Promise.all([redisUp(deps.redis), ...Object.values(services).map((addr) => checkHealth(addr, '', 1000))]);
      const checks: Record<string, string> = { redis: redis ? 'ok' : 'unavailable' };
      Object.keys(services).forEach((name, i) => (checks[name] = states[i]));
      const ready = redis && states.every((s) => s === 'SERVING');
      ctx.status = ready ? 200 : 503;
      if (!ready) ctx.set('Retry-After', '5');
      // A service is SERVING only while its store connection is up, so this covers the store too.
      ctx.body = { status: ready ? 'ready' : 'not_ready', checks };
      return;
    }
    if (ctx.path === '/metrics') {
      ctx.type = deps.metrics.registry.contentType;
      ctx.body = await deps.metrics.registry.metrics();
      return;
    }
    return next();
  });
  app.use(adminConsole());
  app.use(docsMiddleware());
  app.use(authMiddleware(deps.verify));
  app.use(jsonBody(deps.config.PTW_BODY_LIMIT_BYTES));
  app.use(recordRejections(rejections));
  app.use(admin.routes());
  app.use(router.routes());
  app.use(allowedMethods(router));
  return app;
}
