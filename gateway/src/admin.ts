/**
 * The admin console (issue 14): its static page under `/admin/`, and the two manage-only routes
 * only it needs — the hourly health history and this gateway replica's own view (Redis, the
 * services' gRPC health, the 429s of the last hour).
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import Router from '@koa/router';
import type { Context, Middleware, Next } from 'koa';
import { checkHealth } from '@ptw/common';
import { redisUp, type GatewayDeps } from './deps';
import { HttpError } from './errors';
import { creds, query } from './params';
import { API_PREFIX, requireManage, routePattern } from './routes';
import type { GatewayState } from './state';
import { THROTTLE_SCOPES, type ThrottleScope } from './throttle';

/** Where the page's files are: `gateway/admin/`, next to both `src/` (jest) and `dist/` (run time). */
export const ADMIN_DIR = path.resolve(__dirname, '..', 'admin');

/** The only files served, so no request path ever reaches the file system. */
const FILES: Record<string, { file: string; type: string }> = {
  '/admin/': { file: 'index.html', type: 'text/html; charset=utf-8' },
  '/admin/admin.js': { file: 'admin.js', type: 'text/javascript; charset=utf-8' },
  '/admin/admin.css': { file: 'admin.css', type: 'text/css; charset=utf-8' },
  '/admin/favicon.svg': { file: 'favicon.svg', type: 'image/svg+xml' },
};

/** The page runs its own script and style files only, talks to this origin only, and is never framed. */
export const ADMIN_HEADERS: Readonly<Record<string, string>> = {
  'Content-Security-Policy':
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'",
  'X-Content-Type-Options': 'nosniff',
  'Referrer-Policy': 'no-referrer',
  'X-Frame-Options': 'DENY',
  'Cache-Control': 'no-cache',
};

/**
 * Serves the page's files (read once at start-up) without a token: they hold no data, every figure
 * is fetched by the page with the token the user pastes.
 */
export function adminConsole(dir = ADMIN_DIR): Middleware {
  const files = Object.fromEntries(Object.entries(FILES).map(([url, f]) => [url, { body: fs.readFileSync(path.join(dir, f.file)), type: f.type }]));
  return async (ctx: Context, next: () => Promise<void>) => {
    if (ctx.path !== '/admin' && !ctx.path.startsWith('/admin/')) return next();
    ctx.set(ADMIN_HEADERS);
    const file = files[ctx.path];
    // A bounded label for logs and metrics: one per file, one for everything else.
    (ctx.state as GatewayState).endpoint = file ? ctx.path : '/admin/*';
    if (ctx.method !== 'GET' && ctx.method !== 'HEAD') throw new HttpError(405, 'method_not_allowed', 'Method not allowed on this route', undefined, { Allow: 'GET, HEAD' });
    if (ctx.path === '/admin') {
      ctx.status = 301;
      ctx.redirect('/admin/');
      return;
    }
    if (!file) throw new HttpError(404, 'not_found', 'Not found');
    ctx.type = file.type;
    ctx.body = file.body;
  };
}

const MINUTE_MS = 60_000;
const RING_MINUTES = 60;

/** The 429s of the last hour per scope, in one-minute slots, kept in this process only. */
export interface RejectionRing {
  record(scope: ThrottleScope, at?: number): void;
  /** Per scope: the total and the per-minute counts of the last 60 minutes, oldest first. */
  snapshot(now?: number): Record<string, { last_hour: number; per_minute: number[] }>;
}

/**
 * The gateway's Prometheus counters only ever grow; a "last hour" needs a window. Each scope has 60
 * slots indexed by minute modulo 60, and a slot remembers which minute it counts, so a slot left
 * from an hour ago reads 0 without a timer clearing it.
 */
export function createRejectionRing(): RejectionRing {
  const slots = new Map<string, { minute: number[]; count: number[] }>(
    THROTTLE_SCOPES.map((s) => [s, { minute: new Array<number>(RING_MINUTES).fill(-1), count: new Array<number>(RING_MINUTES).fill(0) }]),
  );
  return {
    record(scope, at = Date.now()) {
      const ring = slots.get(scope);
      if (!ring) return;
      const m = Math.floor(at / MINUTE_MS);
      const i = m % RING_MINUTES;
      if (ring.minute[i] !== m) {
        ring.minute[i] = m;
        ring.count[i] = 0;
      }
      ring.count[i]++;
    },
    snapshot(now = Date.now()) {
      const current = Math.floor(now / MINUTE_MS);
      const out: Record<string, { last_hour: number; per_minute: number[] }> = {};
      for (const [scope, ring] of slots) {
        const per_minute = Array.from({ length: RING_MINUTES }, (_, k) => {
          const m = current - (RING_MINUTES - 1) + k;
          const i = m % RING_MINUTES;
          return ring.minute[i] === m ? ring.count[i] : 0;
        });
        out[scope] = { last_hour: per_minute.reduce((a, b) => a + b, 0), per_minute };
      }
      return out;
    },
  };
}

/** Counts every throttle 429 passing through (they carry their scope in the error details). */
export function recordRejections(ring: RejectionRing): Middleware {
  return async (_ctx: Context, next: Next) => {
    try {
      await next();
    } catch (err) {
      const scope = err instanceof HttpError && err.status === 429 ? (err.details as { scope?: ThrottleScope } | undefined)?.scope : undefined;
      if (scope) ring.record(scope);
      throw err;
    }
  };
}

/** Store reachability as the services see it: each is SERVING only while its store connection is up. */
export function storeState(states: string[]): 'reachable' | 'unreachable' | 'unknown' {
  if (states.some((s) => s === 'SERVING')) return 'reachable';
  if (states.some((s) => s === 'NOT_SERVING')) return 'unreachable';
  return 'unknown';
}

/** The console's two manage-only routes under the API prefix. */
export function adminRouter(deps: Pick<GatewayDeps, 'clients' | 'config' | 'redis'>, ring: RejectionRing): Router {
  const router = new Router({ prefix: API_PREFIX });
  const replica = `${os.hostname()}:${process.pid}`;
  router.use(async (ctx, next) => {
    (ctx.state as GatewayState).endpoint = routePattern(ctx);
    await next();
  });

  router.get('/permits/health/history/', async (ctx) => {
    requireManage(ctx);
    const raw = query(ctx, 'hours');
    if (raw !== '' && !/^([1-9]|1\d|2[0-4])$/.test(raw)) throw new HttpError(400, 'invalid_argument', 'hours: expected an integer from 1 to 24', { field: 'hours' });
    ctx.body = await deps.clients.health.call.getHealthHistory({ hours: raw === '' ? 0 : Number(raw) }, creds(ctx));
  });

  router.get('/admin/gateway/', async (ctx) => {
    requireManage(ctx);
    const c = deps.config;
    const addrs = { sync: c.PTW_SYNC_ADDR, workflow: c.PTW_WORKFLOW_ADDR, export: c.PTW_EXPORT_ADDR, health: c.PTW_HEALTH_ADDR };
    const [redis, ...states] = await Promise.all([redisUp(deps.redis), ...Object.values(addrs).map((a) => checkHealth(a, '', 1000))]);
    const services = Object.fromEntries(Object.keys(addrs).map((name, i) => [name, states[i]]));
    ctx.body = {
      as_of: new Date().toISOString(),
      replica,
      redis: redis ? 'reachable' : 'unreachable',
      store: storeState([services.sync, services.workflow, services.export]),
      services,
      throttle_rejections: { window_minutes: RING_MINUTES, scopes: ring.snapshot() },
    };
  });
  return router;
}
