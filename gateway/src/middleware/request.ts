import type { Context, Next } from 'koa';
import { normalizeRequestId, type Logger, type Metrics } from '@ptw/common';
import { toHttpError } from '../errors';
import type { GatewayState } from '../state';

/**
 * Outermost middleware: request id in and out, the one error→JSON mapping, one access line with
 * `duration_ms`, and the request metrics.
 */
export function requestMiddleware(log: Logger, metrics: Metrics) {
  const requests = metrics.counter('ptw_http_requests_total', 'HTTP requests by route and status', ['method', 'route', 'status']);
  const durations = metrics.histogram('ptw_http_request_duration_seconds', 'HTTP request duration by route', ['method', 'route'], [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30]);
  return async (ctx: Context, next: Next) => {
    const started = process.hrtime.bigint();
    const state = ctx.state as GatewayState;
    state.reqId = normalizeRequestId(ctx.get('x-request-id') || undefined);
    state.log = log.child({ req_id: state.reqId }, true);
    const controller = new AbortController();
    state.signal = controller.signal;
    // A client that goes away cancels the backend call made for it.
    ctx.res.once('close', () => {
      if (!ctx.res.writableFinished) controller.abort();
    });
    ctx.set('X-Request-Id', state.reqId);
    try {
      await next();
      if (ctx.status === 404 && ctx.body === undefined) {
        ctx.status = 404;
        ctx.body = { error: { code: 'not_found', message: 'No such route' } };
      }
    } catch (err) {
      const mapped = toHttpError(err);
      if (mapped.unexpected) state.log.error({ err, endpoint: state.endpoint }, 'request failed');
      ctx.status = mapped.status;
      ctx.set(mapped.headers);
      ctx.body = mapped.body;
    } finally {
      const seconds = Number(process.hrtime.bigint() - started) / 1e9;
      const route = state.endpoint ?? (ctx.status === 404 ? 'unmatched' : ctx.path);
      requests.inc({ method: ctx.method, route, status: String(ctx.status) });
      durations.observe({ method: ctx.method, route }, seconds);
      state.log.info(
        {
          event: 'http_access',
          endpoint: `${ctx.method} ${route}`,
          status_code: ctx.status,
          duration_ms: Math.round(seconds * 1000),
          user_id: state.principal?.user_id,
        },
        'request',
      );
    }
  };
}
