import type { Context, Next } from 'koa';
import type { ServerResponse } from 'node:http';
import { lineWriter, normalizeRequestId, type CancelHook, type Logger, type Metrics } from '@ptw/common';
import { toHttpError } from '../errors';
import { PUBLIC_PATHS } from './auth';
import type { GatewayState } from '../state';

/**
 * A cancel hook (see CancelHook in @ptw/common) that fires when the client of this request goes away
 * before its response is written; routes pass it with the backend call they make so that the call
 * is cancelled with it. A listener on the response's 'close', not an AbortSignal: an AbortController
 * and its EventTarget listener cost about a tenth of the whole gRPC call (docs/benchmarks.md "The gRPC hop").
 */
export function onDisconnect(ctx: Context): CancelHook {
  const res: ServerResponse = ctx.res;
  return (cancel) => {
    const closed = () => {
      if (!res.writableFinished) cancel();
    };
    // Already closed (the client left while the body was read): no 'close' will come any more.
    if (res.destroyed) {
      closed();
      return noop;
    }
    res.once('close', closed);
    return () => res.removeListener('close', closed);
  };
}

const noop = () => undefined;

/**
 * Outermost middleware: request id in and out, the one error→JSON mapping, one access line with
 * `duration_ms`, and the request metrics. Lines of a request carry its `req_id` as a field (no
 * child logger per request: most requests log only the access line).
 */
export function requestMiddleware(log: Logger, metrics: Metrics) {
  const requests = metrics.counter('ptw_http_requests_total', 'HTTP requests by route and status', ['method', 'route', 'status']);
  const durations = metrics.histogram(
    'ptw_http_request_duration_seconds',
    'HTTP request duration by route',
    ['method', 'route'],
    [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
  );
  const accessLine = lineWriter(log, 'request');
  return async (ctx: Context, next: Next) => {
    const started = performance.now();
    const state = ctx.state as GatewayState;
    // Node lower-cases header names: read them directly (ctx.get lower-cases the name each time).
    const reqId = normalizeRequestId(ctx.headers['x-request-id']);
    state.reqId = reqId;
    ctx.set('X-Request-Id', reqId);
    try {
      await next();
      if (ctx.status === 404 && ctx.body === undefined) {
        ctx.status = 404;
        ctx.body = { error: { code: 'not_found', message: 'No such route' } };
      }
    } catch (err) {
      const mapped = toHttpError(err);
      if (mapped.unexpected) log.error({ req_id: reqId, err, endpoint: state.endpoint, ...state.trace?.fields }, 'request failed');
      ctx.status = mapped.status;
      ctx.set(mapped.headers);
      ctx.body = mapped.body;
    } finally {
      const ms = performance.now() - started;
      // Never the raw path of an unmatched request: any client could mint a label set per path.
      const route = state.endpoint ?? (PUBLIC_PATHS.has(ctx.path) ? ctx.path : 'unmatched');
      const method = ctx.method;
      requests.inc({ method, route, status: String(ctx.status) });
      durations.observe({ method, route }, ms / 1000);
      accessLine({
        req_id: reqId,
        event: 'http_access',
        endpoint: `${method} ${route}`,
        status_code: ctx.status,
        duration_ms: Math.round(ms),
        user_id: state.principal?.user_id,
        ...state.trace?.fields,
      });
    }
  };
}
