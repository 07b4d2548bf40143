/**
 * Test scaffolding shared by the throttle's unit tests (fake Redis) and its end-to-end tests (real
 * Redis): a Koa app with the gateway's request middleware, a stand-in auth that takes the caller from
 * `x-test-user`, and the caller's routes around the throttle.
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import Koa from 'koa';
import type Redis from 'ioredis';
import { createLogger, memorySink, Metrics } from '@ptw/common';
import type { ErrorBody } from '../errors';
import { requestMiddleware } from '../middleware/request';
import type { ThrottleConfig } from './config';
import { createThrottle, type Throttle } from './throttle';

export interface ThrottleApp {
  url: string;
  metrics: Metrics;
  /** Every log line so far (pending ones written first). */
  logs(): Record<string, unknown>[];
  throttle: Throttle;
  close(): Promise<void>;
}

export async function startThrottleApp(opts: { redis: Redis; config: ThrottleConfig; keyPrefix: string; routes: (throttle: Throttle) => Koa.Middleware }): Promise<ThrottleApp> {
  const captured = memorySink();
  const log = createLogger('gateway', { stdout: false, sink: captured.sink });
  const metrics = new Metrics('gateway');
  const throttle = createThrottle({ redis: opts.redis, config: opts.config, log, metrics, keyPrefix: opts.keyPrefix });
  const app = new Koa();
  app.use(requestMiddleware(log, metrics));
  app.use(async (ctx, next) => {
    const user = ctx.get('x-test-user');
    if (user) ctx.state.principal = { user_id: user, role: 'worker', project_ids: [] };
    await next();
  });
  app.use(opts.routes(throttle));
  // eslint-disable-next-line @typescript-eslint/no-misused-promises -- Koa's callback handles its own errors (ctx.onerror): its promise never rejects
  const server = http.createServer(app.callback());
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    metrics,
    logs: () => captured.lines(),
    throttle,
    close: () => {
      server.closeAllConnections();
      return new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

/** The current value of one counter series (0 when it was never incremented). */
export async function seriesValue(metrics: Metrics, name: string, labels: Record<string, string>): Promise<number> {
  const { values } = await metrics.registry.getSingleMetric(name)!.get();
  return values.find((v) => Object.entries(labels).every(([k, l]) => v.labels[k] === l))?.value ?? 0;
}

/** The JSON error of a response, typed as SPEC §4 writes it. */
export const errorOf = async (res: Response) => ((await res.json()) as ErrorBody & { error: { details?: { scope?: string; retry_after?: number } } }).error;
