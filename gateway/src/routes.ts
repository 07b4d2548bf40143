import Router from '@koa/router';
import type { Context } from 'koa';
import { canManage, parseInput } from '@ptw/common';
import type { healthPb } from '@ptw/proto';
import type { Clients } from './clients';
import { HttpError } from './errors';
import type { GatewayState } from './state';
import type { Throttle } from './throttle';
import { exportRoute } from './export';
import { body, creds, permitFilter, query } from './params';
import { assignIsolationBody, emptyBody, SYNC_MAX_BYTES, syncChange, syncEnvelope, transitionBody, updateCloseoutBody, updateIsolationBody, versionBody } from './openapi/requests';

export const API_PREFIX = '/api/v1/ptw';

/** Largest `page_size` of a list; `page` is capped by its wire type (int32). */
export const MAX_PAGE_SIZE = 100;
export const MAX_PAGE = 2 ** 31 - 1;

function pageParam(ctx: Context, name: string, dflt: number, max: number): number {
  const v = query(ctx, name);
  if (v === '') return dflt;
  // Digits only (no sign, point or exponent), few enough for Number() to be exact.
  const n = /^\d{1,10}$/.test(v) ? Number(v) : NaN;
  if (!(n >= 1 && n <= max)) throw new HttpError(400, 'invalid_argument', `${name}: expected an integer from 1 to ${max}`, { field: name });
  return n;
}

/**
 * `page` and `page_size` of a list (SPEC §4: both start at 1). Checked here because the wire cannot
 * say "0": proto3 sends 0 as "unset", which the service would serve as its default page.
 */
export function pageQuery(ctx: Context): { page: number; page_size: number } {
  return { page: pageParam(ctx, 'page', 1, MAX_PAGE), page_size: pageParam(ctx, 'page_size', 20, MAX_PAGE_SIZE) };
}

/**
 * Sync request from the HTTP body: the envelope must be valid (else 400/413, nothing applied);
 * a change of the wrong shape is passed on marked invalid, so it is rejected alone.
 */
function syncRequest(ctx: Context) {
  if (((ctx.state as { bodyBytes?: number }).bodyBytes ?? 0) > SYNC_MAX_BYTES) {
    throw new HttpError(413, 'payload_too_large', `A sync request is at most ${SYNC_MAX_BYTES} bytes`, { limit_bytes: SYNC_MAX_BYTES });
  }
  // Each change is checked on its own by the sync service: a bad one is rejected alone (SPEC §5).
  const env = parseInput(syncEnvelope, body(ctx), { storable: false });
  const str = (v: unknown) => (typeof v === 'string' ? v.slice(0, 128) : '');
  return {
    device_id: env.device_id,
    client_time: env.client_time,
    changes: env.changes.map((raw) => {
      const r = syncChange.safeParse(raw);
      if (r.success) {
        return { ...r.data, server_id: r.data.server_id ?? undefined, client_version: r.data.client_version ?? undefined, invalid_reason: '' };
      }
      const o = (raw && typeof raw === 'object' ? raw : {}) as Record<string, unknown>;
      const issue = r.error.issues[0];
      const field = issue.code === 'unrecognized_keys' ? issue.keys[0] : issue.path.map(String).join('.') || 'change';
      return {
        entity: str(o.entity),
        op: str(o.op),
        offline_id: str(o.offline_id),
        server_id: undefined,
        client_version: undefined,
        data: {},
        invalid_reason: `${field}: ${issue.code === 'unrecognized_keys' ? 'unknown field' : issue.message}`,
      };
    }),
  };
}

/** The manage capability (SPEC §2) checked at the edge too, so a worker never reaches the service. */
export function requireManage(ctx: Context): void {
  const p = (ctx.state as GatewayState).principal;
  if (!p || !canManage(p)) throw new HttpError(403, 'permission_denied', 'This route is for managers only');
}

/** A figure a service could not give: null, never absent or 0 (SPEC §8). */
function figures<K extends string>(section: (Partial<Record<K, number>> & { unavailable_reason?: string }) | undefined, keys: K[]) {
  const out: Record<string, number | string | null> = {};
  for (const k of keys) out[k] = section?.[k] ?? null;
  if (section?.unavailable_reason) out.unavailable_reason = section.unavailable_reason;
  return out;
}

/** SPEC §8's JSON: job fields that never happened and figures that could not be had are null, not absent. */
function healthBody(r: healthPb.HealthReport) {
  return {
    ...r,
    ...(r.sync || r.exports || r.workflow
      ? {
          sync: figures(r.sync, ['applied_last_24h', 'conflicts_last_24h', 'rejected_last_24h']),
          exports: figures(r.exports, ['bulk_exports_last_24h']),
          workflow: figures(r.workflow, ['overdue_verification', 'overdue_approval']),
        }
      : {}),
    jobs: r.jobs.map((j) => ({
      name: j.name,
      last_run_at: j.last_run_at ?? null,
      last_success_at: j.last_success_at ?? null,
      last_error: j.last_error ?? null,
      last_duration_ms: j.last_duration_ms ?? null,
    })),
  };
}

/**
 * The pattern of the route that serves a request (`/api/v1/ptw/permits/:id/`), for logs, metrics and
 * the trace's server span; undefined when only the prefix matched. `ctx.matched` holds every layer
 * whose path matches, whatever its method (`GET /permits/kpis/` also matches `/permits/:id/`): the
 * first one registered for the request's method is the route that answers (no route calls next).
 * Not `_matchedRoute`: inside `router.use` it holds the use-layer's own pattern, the same for every route.
 */
export function routePattern(ctx: Context): string | undefined {
  const matched = (ctx as unknown as { matched?: { path: string; methods: string[] }[] }).matched ?? [];
  for (const layer of matched) if (layer.methods.includes(ctx.method)) return layer.path;
  return undefined;
}

/** The HTTP API of SPEC §4. Each route validates its input, calls one RPC and returns its answer. */
export function apiRouter(clients: Clients, throttle: Throttle): Router {
  const router = new Router({ prefix: API_PREFIX });
  const wf = clients.workflow.call;
  router.use(async (ctx, next) => {
    (ctx.state as GatewayState).endpoint = routePattern(ctx);
    await next();
  });

  router.post('/sync-offline-data/', throttle.middleware('ptw_sync'), async (ctx) => {
    ctx.body = await clients.sync.call.syncOfflineData(syncRequest(ctx), { ...creds(ctx), deadlineMs: 120_000 });
  });

  router.get('/permit-types/', async (ctx) => {
    ctx.body = (await wf.listPermitTypes({}, creds(ctx))).results;
  });

  router.get('/permits/health/', async (ctx) => {
    requireManage(ctx);
    ctx.body = healthBody(await clients.health.call.getHealth({}, creds(ctx)));
  });

  router.get('/jobs/', async (ctx) => {
    requireManage(ctx);
    const r = await wf.listJobs({}, creds(ctx));
    ctx.body = { jobs: healthBody({ jobs: r.jobs } as healthPb.HealthReport).jobs.map((j, i) => ({ ...j, schedule: r.jobs[i].schedule })), recent_runs: r.recent_runs };
  });
  router.post('/jobs/:name/run/', async (ctx) => {
    requireManage(ctx);
    if (!/^[a-z_]{1,64}$/.test(ctx.params.name)) throw new HttpError(404, 'not_found', 'No such job');
    ctx.body = await wf.runJob({ name: ctx.params.name }, { ...creds(ctx), deadlineMs: 300_000 });
  });

  router.get('/throttle-status/', async (ctx) => {
    requireManage(ctx);
    const user = query(ctx, 'user') || (ctx.state as GatewayState).principal!.user_id;
    ctx.body = { user, scopes: await throttle.status(user) };
  });

  router.post('/permits/bulk_export_pdf/', throttle.middleware('ptw_bulk_export'), exportRoute(clients, 'pdf'));
  router.post('/permits/bulk_export_excel/', throttle.middleware('ptw_bulk_export'), exportRoute(clients, 'excel'));

  router.get('/permits/kpis/', throttle.middleware('ptw_kpi'), async (ctx) => {
    ctx.body = await clients.export.call.getKpis({ project: query(ctx, 'project') }, creds(ctx));
  });

  router.get('/permits/', async (ctx) => {
    ctx.body = await wf.listPermits({ filter: permitFilter(ctx), ...pageQuery(ctx) }, creds(ctx));
  });
  router.post('/permits/', async (ctx) => {
    ctx.status = 201;
    ctx.body = await wf.createPermit({ data: body(ctx) }, creds(ctx));
  });
  router.get('/permits/:id/', async (ctx) => {
    ctx.body = await wf.getPermit({ id: ctx.params.id }, creds(ctx));
  });
  router.patch('/permits/:id/', async (ctx) => {
    const { version, ...changes } = parseInput(versionBody, body(ctx));
    ctx.body = await wf.updatePermit({ id: ctx.params.id, version, changes }, creds(ctx));
  });
  router.post('/permits/:id/transition/', async (ctx) => {
    const b = parseInput(transitionBody, body(ctx));
    ctx.body = await wf.transitionPermit({ id: ctx.params.id, status: b.status, comments: b.comments }, creds(ctx));
  });

  router.get('/permits/:id/isolation/', async (ctx) => {
    ctx.body = await wf.getIsolation({ permit_id: ctx.params.id }, creds(ctx));
  });
  router.post('/permits/:id/assign_isolation/', async (ctx) => {
    const b = parseInput(assignIsolationBody, body(ctx));
    ctx.status = 201;
    ctx.body = await wf.assignIsolation({ permit_id: ctx.params.id, points: 'points' in b ? b.points : [b] }, creds(ctx));
  });
  router.post('/permits/:id/update_isolation/', async (ctx) => {
    const b = parseInput(updateIsolationBody, body(ctx));
    ctx.body = await wf.updateIsolation({ permit_id: ctx.params.id, ...b }, creds(ctx));
  });

  router.get('/permits/:id/closeout/', async (ctx) => {
    ctx.body = await wf.getCloseout({ permit_id: ctx.params.id }, creds(ctx));
  });
  router.post('/permits/:id/update_closeout/', async (ctx) => {
    const b = parseInput(updateCloseoutBody, body(ctx));
    ctx.body = await wf.updateCloseout({ permit_id: ctx.params.id, checklist: b.checklist, remarks: b.remarks }, creds(ctx));
  });
  router.post('/permits/:id/complete_closeout/', async (ctx) => {
    parseInput(emptyBody, body(ctx));
    ctx.body = await wf.completeCloseout({ permit_id: ctx.params.id }, creds(ctx));
  });

  router.get('/workflow/my-tasks/', async (ctx) => {
    ctx.body = (await wf.myTasks({}, creds(ctx))).results;
  });

  router.get('/notifications/', throttle.middleware('ptw_notifications'), async (ctx) => {
    const unread = query(ctx, 'unread');
    if (unread && unread !== 'true' && unread !== 'false') throw new HttpError(400, 'invalid_argument', 'unread: expected true or false', { field: 'unread' });
    ctx.body = await wf.listNotifications({ ...pageQuery(ctx), unread_only: unread === 'true' }, creds(ctx));
  });
  router.get('/notifications/unread-count/', throttle.middleware('ptw_notifications'), async (ctx) => {
    ctx.body = await wf.unreadNotificationCount({}, creds(ctx));
  });
  router.post('/notifications/mark-all-read/', throttle.middleware('ptw_notifications'), async (ctx) => {
    ctx.body = await wf.markAllNotificationsRead({}, creds(ctx));
  });
  router.post('/notifications/:id/read/', throttle.middleware('ptw_notifications'), async (ctx) => {
    ctx.body = await wf.markNotificationRead({ id: ctx.params.id }, creds(ctx));
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
