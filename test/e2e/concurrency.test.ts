/**
 * The whole system hit by many requests at once, the way a shift change or a fleet of tablets coming
 * back online hits it: on a fresh store every route's first requests arrive together (the first
 * list count of a project, the first KPI snapshot of a scope, the first permit number of a year are
 * all written by whoever comes first), then one permit's writes race. Nothing may answer 5xx or log
 * an error, and the races must end as SPEC says: one winner, the others a clear 409/400.
 * Found this way: a project's first permit lists and the first KPIs of a scope answered 500 when they
 * arrived together (two first upserts of one `_id` on FerretDB).
 */
import { readLog, startTestStack, token } from '../support/stack';
import type { Stack } from '../../libs/devstore/src/stack';

jest.setTimeout(240_000);

/** Requests per route and phase. */
const AT_ONCE = 10;
const HOUR = 3600_000;

let stack: Stack & { logDir: string };
let worker: string;
let supervisor: string;
let manager: string;
const served: { route: string; status: number; body: string }[] = [];

async function call(route: string, method: string, path: string, auth: string, body?: unknown): Promise<{ status: number; body: any }> {
  const res = await fetch(`${stack.gatewayUrl}/api/v1/ptw${path}`, {
    method,
    headers: { authorization: `Bearer ${auth}`, 'content-type': 'application/json' },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await res.text();
  served.push({ route, status: res.status, body: text.slice(0, 300) });
  let parsed: unknown = text;
  try {
    parsed = JSON.parse(text);
  } catch {
    // an export's file
  }
  return { status: res.status, body: parsed };
}

const atOnce = <T>(fn: (i: number) => Promise<T>) => Promise.all(Array.from({ length: AT_ONCE }, (_, i) => fn(i)));
const statuses = (rs: { status: number }[]) => rs.map((r) => r.status).sort((a, b) => a - b);

function permitInput(i = 0) {
  const now = Date.now();
  return {
    permit_type_id: 'hot-work',
    title: `Concurrent ${i}`,
    probability: 2,
    severity: 3,
    planned_start_time: new Date(now + HOUR).toISOString(),
    planned_end_time: new Date(now + 5 * HOUR).toISOString(),
  };
}

beforeAll(async () => {
  stack = await startTestStack('concurrency', {
    PTW_THROTTLE_SYNC: '100000/min',
    PTW_THROTTLE_KPI: '100000/min',
    PTW_THROTTLE_NOTIFICATIONS: '100000/min',
    PTW_THROTTLE_BULK_EXPORT: '100000/hour',
  });
  worker = await token('u-worker', 'worker', ['p1']);
  supervisor = await token('u-supervisor', 'supervisor', ['p1']);
  manager = await token('u-manager', 'manager', ['p1', 'p2']);
});

afterAll(async () => {
  await stack?.stop();
});

afterEach(() => {
  // Whatever a test asserts, no request of it may have failed on the server's side.
  const failed = served.splice(0).filter((s) => s.status >= 500);
  expect(failed).toEqual([]);
});

it('when every read route and permit creation get their first requests on a fresh store at once, then all answer', async () => {
  const groups = await Promise.all([
    atOnce(() => call('list', 'GET', '/permits/?page_size=5', manager)),
    atOnce(() => call('list p2', 'GET', '/permits/?project=p2', manager)),
    atOnce(() => call('kpis', 'GET', '/permits/kpis/', manager)),
    atOnce(() => call('kpis p1', 'GET', '/permits/kpis/?project=p1', manager)),
    atOnce(() => call('types', 'GET', '/permit-types/', worker)),
    atOnce(() => call('notifications', 'GET', '/notifications/', worker)),
    atOnce(() => call('unread', 'GET', '/notifications/unread-count/', worker)),
    atOnce(() => call('tasks', 'GET', '/workflow/my-tasks/', supervisor)),
    atOnce(() => call('health', 'GET', '/permits/health/', manager)),
    atOnce(() => call('history', 'GET', '/permits/health/history/', manager)),
    atOnce(() => call('jobs', 'GET', '/jobs/', manager)),
    atOnce((i) => call('create', 'POST', '/permits/', worker, permitInput(i))),
  ]);
  for (const group of groups.slice(0, -1)) expect(statuses(group)).toEqual(Array(AT_ONCE).fill(200));
  const created = groups[groups.length - 1];
  expect(statuses(created)).toEqual(Array(AT_ONCE).fill(201));
  expect(new Set(created.map((c) => c.body.permit_number)).size).toBe(AT_ONCE);
  // Every list and KPI answer of one scope agrees with the others (one snapshot, one count).
  expect(new Set(groups[2].map((k) => JSON.stringify(k.body.counts))).size).toBe(1);
});

it("when one permit's writes race, then one of each wins and the others get a clear conflict", async () => {
  const p = (await call('create', 'POST', '/permits/', worker, permitInput())).body;

  const edits = await atOnce((i) => call('edit', 'PATCH', `/permits/${p.id}/`, worker, { version: p.version, location: `Bay ${i}` }));
  expect(statuses(edits)).toEqual([200, ...Array(AT_ONCE - 1).fill(409)]);

  const points = await atOnce((i) => call('assign isolation', 'POST', `/permits/${p.id}/assign_isolation/`, worker, { name: `Breaker ${i}`, energy_type: 'electrical' }));
  expect(statuses(points)).toEqual(Array(AT_ONCE).fill(201));
  const isolation = (await call('isolation', 'GET', `/permits/${p.id}/isolation/`, worker)).body;
  expect(isolation.points).toHaveLength(AT_ONCE);

  const submits = await atOnce(() => call('submit', 'POST', `/permits/${p.id}/transition/`, worker, { status: 'submitted' }));
  expect(submits.filter((s) => s.status === 200)).toHaveLength(1);
  // The others read the permit before or after the winner's move: a stale version, or no such move.
  for (const s of submits.filter((x) => x.status !== 200)) expect([400, 409]).toContain(s.status);

  const verifies = await atOnce(() => call('verify', 'POST', `/permits/${p.id}/transition/`, supervisor, { status: 'under_review' }));
  expect(verifies.filter((s) => s.status === 200)).toHaveLength(1);
  const final = (await call('read', 'GET', `/permits/${p.id}/`, worker)).body;
  expect(final.status).toBe('under_review');
});

it('when a tablet sends the same batch many times at once, then every answer is whole and each change is applied once; so is marking all read', async () => {
  const change = (offline: string) => ({ entity: 'permit', op: 'create', offline_id: offline, data: permitInput() });
  const same = await atOnce(() => call('sync replay', 'POST', '/sync-offline-data/', worker, { device_id: 'tab-a', changes: [change('conc-1'), change('conc-2')] }));
  expect(statuses(same)).toEqual(Array(AT_ONCE).fill(200));
  for (const r of same) expect(r.body.summary.total).toBe(2);
  const ids = new Set(same.flatMap((r) => r.body.applied.map((a: { server_id: string }) => a.server_id)));
  expect(ids.size).toBe(2);

  const marks = await atOnce(() => call('mark all read', 'POST', '/notifications/mark-all-read/', worker));
  expect(statuses(marks)).toEqual(Array(AT_ONCE).fill(200));
});

it('when the jobs are run by hand and exports are asked for at once, then all answer', async () => {
  for (const job of ['check_expiring_permits', 'check_overdue_workflow_tasks', 'auto_expire_permits']) {
    const runs = await atOnce(() => call(`run ${job}`, 'POST', `/jobs/${job}/run/`, manager));
    expect(statuses(runs)).toEqual(Array(AT_ONCE).fill(200));
  }
  const exports = await Promise.all([
    atOnce(() => call('excel', 'POST', '/permits/bulk_export_excel/', manager, {})),
    atOnce(() => call('pdf', 'POST', '/permits/bulk_export_pdf/', manager, {})),
  ]);
  for (const group of exports) expect(statuses(group)).toEqual(Array(AT_ONCE).fill(200));
});

it('when it is all over, then no process logged an error', () => {
  for (const service of ['gateway', 'workflow', 'sync', 'export', 'health']) {
    const errors = readLog(stack.logDir, service).filter((l) => Number(l.level) >= 50);
    expect({ service, errors: errors.map((e) => e.msg) }).toEqual({ service, errors: [] });
  }
});
