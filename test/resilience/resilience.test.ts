/**
 * Kills and restarts the store, Redis and each service process under a steady load of syncs, edits
 * and exports (loopback only, bounded in time), then checks: every acknowledged change is in the
 * store exactly once, every failure was a clear 503/504 (or an edit conflict), the survivors kept
 * running and recovered by themselves, and health reported each outage. Prints what it injected
 * and what it counted.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import mongoose, { type Connection } from 'mongoose';
import { registerModels, type Models } from '@ptw/db';
import { freePort, stopChild, canConnect } from '@ptw/devstore';
import { startTestStack, token } from '../support/stack';
import type { Stack } from '../../libs/devstore/src/stack';

jest.setTimeout(400_000);

const RUN = Date.now().toString(36);
let stack: Stack;
let redisPort: number;
let redis: ChildProcess;
let worker: string;
let manager: string;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function startRedis(): Promise<void> {
  redis = spawn('redis-server', ['--port', String(redisPort), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'], { stdio: 'ignore' });
  for (let i = 0; i < 50 && !(await canConnect('127.0.0.1', redisPort)); i++) await sleep(100);
}

type Outcome = { kind: string; status: number | 'network'; retryAfter?: string | null; during: string };
const outcomes: Outcome[] = [];
const acknowledged = new Map<string, string>(); // offline_id -> title
const unacknowledged = new Map<string, string>();
let phase = 'baseline';
let stopLoad = false;
let seq = 0;

async function call(kind: string, method: string, p: string, tok: string, body?: unknown) {
  try {
    const res = await fetch(`${stack.gatewayUrl}/api/v1/ptw${p}`, {
      method,
      headers: { authorization: `Bearer ${tok}`, 'content-type': 'application/json' },
      body: body === undefined ? undefined : JSON.stringify(body),
      signal: AbortSignal.timeout(20_000),
    });
    const text = Buffer.from(await res.arrayBuffer());
    outcomes.push({ kind, status: res.status, retryAfter: res.headers.get('retry-after'), during: phase });
    return { status: res.status, body: res.headers.get('content-type')?.includes('json') ? JSON.parse(text.toString()) : undefined };
  } catch {
    outcomes.push({ kind, status: 'network', during: phase });
    return { status: 0, body: undefined };
  }
}

async function syncLoop(device: string) {
  while (!stopLoad) {
    const offline = `${device}-${++seq}`;
    const title = `res-${RUN}-${offline}`;
    const r = await call('sync', 'POST', '/sync-offline-data/', worker, {
      device_id: device,
      changes: [{ entity: 'permit', op: 'create', offline_id: offline, data: { permit_type_id: 'hot-work', title } }],
    });
    if (r.status === 200 && r.body.applied[0]?.status === 'applied') acknowledged.set(offline, title);
    else unacknowledged.set(offline, title);
    await sleep(50);
  }
}

async function editLoop(permitId: string) {
  while (!stopLoad) {
    const g = await call('read', 'GET', `/permits/${permitId}/`, worker);
    if (g.status === 200) await call('edit', 'PATCH', `/permits/${permitId}/`, worker, { version: g.body.version, location: `L${++seq}` });
    await sleep(80);
  }
}

async function exportLoop() {
  while (!stopLoad) {
    await call('export', 'POST', '/permits/bulk_export_excel/?status=draft&q=res-edit', manager, {});
    await sleep(500);
  }
}

async function until(what: string, ok: () => Promise<boolean>, ms = 60_000) {
  const t0 = Date.now();
  while (Date.now() - t0 < ms) {
    if (await ok()) return Date.now() - t0;
    await sleep(200);
  }
  throw new Error(`did not recover: ${what}`);
}

const storeWorks = async () => (await call('probe', 'GET', '/permits/?page_size=1', worker)).status === 200;

beforeAll(async () => {
  redisPort = await freePort();
  await startRedis();
  const high = { PTW_THROTTLE_SYNC: '1000000/min', PTW_THROTTLE_BULK_EXPORT: '1000000/hour', PTW_THROTTLE_KPI: '1000000/min', PTW_THROTTLE_NOTIFICATIONS: '1000000/min' };
  stack = await startTestStack('resilience', { ...high, PTW_THROTTLE_BULK_EXPORT_FAIL: 'closed' }, { redisUrl: `redis://127.0.0.1:${redisPort}` });
  worker = await token(`u-res-w-${RUN}`, 'worker', ['p1']);
  manager = await token(`u-res-m-${RUN}`, 'manager', ['p1']);
});

afterAll(async () => {
  stopLoad = true;
  await stack?.stop();
  if (redis) await stopChild(redis);
});

it('when the store, Redis and each service die and come back under load, then nothing acknowledged is lost or doubled and failures are clear', async () => {
  if (process.env.MONGO_URL) {
    process.stdout.write('resilience: skipped, the store is external (MONGO_URL) and cannot be killed from here\n');
    return;
  }
  const created = await call('setup', 'POST', '/permits/', worker, { permit_type_id: 'hot-work', title: `res-edit-${RUN}` });
  expect(created.status).toBe(201);
  const gatewayPid = stack.procs.gateway.pid;
  const loops = [syncLoop(`tabA-${RUN}`), syncLoop(`tabB-${RUN}`), editLoop(created.body.id), exportLoop()];
  const injected: string[] = [];
  const healthDuring: Record<string, unknown> = {};
  const health = async () => (await call('health', 'GET', '/permits/health/', manager)).body;

  await sleep(2000);

  phase = 'store down';
  await stack.killStore();
  injected.push('store SIGKILL');
  await sleep(3000);
  healthDuring.store = await health();
  await stack.restartStore();
  injected.push(`store restarted (recovered in ${await until('reads after store restart', storeWorks)} ms)`);

  phase = 'redis down';
  await stopChild(redis, 0);
  injected.push('redis stopped');
  await sleep(3000);
  const duringRedis = outcomes.filter((o) => o.during === 'redis down' && o.kind === 'sync');
  healthDuring.redis = { syncs: duringRedis.length, ok: duringRedis.filter((o) => o.status === 200).length };
  await startRedis();
  injected.push('redis restarted');

  for (const name of ['sync', 'workflow', 'export'] as const) {
    phase = `${name} down`;
    const child = stack.procs[name];
    const gone = new Promise((r) => child.once('exit', r));
    child.kill('SIGKILL');
    await gone;
    injected.push(`${name} SIGKILL`);
    await sleep(1500);
    healthDuring[name] = await health();
    await stack.start(name);
    injected.push(`${name} restarted (recovered in ${await until(`${name} back`, async () => ((await health())?.services?.[name] ?? '') === 'SERVING')} ms)`);
  }
  phase = 'after';
  await sleep(2000);
  stopLoad = true;
  await Promise.all(loops);

  // Devices resend what was never acknowledged (lost answers, 503s) until it is acknowledged,
  // as a tablet does; a claim left by a crash is taken over after 20 s. Each lands exactly once.
  const resendUntil = Date.now() + 120_000;
  for (const [offline, title] of unacknowledged) {
    const device = offline.split('-').slice(0, 2).join('-');
    let applied = 0;
    while (applied === 0 && Date.now() < resendUntil) {
      const r = await call('resend', 'POST', '/sync-offline-data/', worker, {
        device_id: device,
        changes: [{ entity: 'permit', op: 'create', offline_id: offline, data: { permit_type_id: 'hot-work', title } }],
      });
      applied = r.status === 200 ? r.body.applied.length : 0;
      if (!applied) await sleep(1000);
    }
    expect([offline, applied]).toEqual([offline, 1]);
    acknowledged.set(offline, title);
  }

  // Edits work again (a version claim orphaned by the store crash is released after 15 s).
  const editRecovered = await until('edits after the outages', async () => {
    const g = await call('read', 'GET', `/permits/${created.body.id}/`, worker);
    return g.status === 200 && (await call('edit', 'PATCH', `/permits/${created.body.id}/`, worker, { version: g.body.version, location: 'final' })).status === 200;
  });
  injected.push(`edits recovered in ${editRecovered} ms`);

  const conn: Connection = await mongoose.createConnection(stack.mongoUrl).asPromise();
  const m: Models = registerModels(conn);
  const stored = await m.Permit.find({ title: { $regex: `^res-${RUN}-` } }, { title: 1 }).lean();
  await conn.close();
  const counts = new Map<string, number>();
  for (const p of stored) counts.set(p.title, (counts.get(p.title) ?? 0) + 1);
  const missing = [...acknowledged.values()].filter((t) => !counts.has(t));
  const doubled = [...counts.entries()].filter(([, n]) => n > 1);

  const byStatus: Record<string, number> = {};
  for (const o of outcomes) byStatus[`${o.kind}:${o.status}`] = (byStatus[`${o.kind}:${o.status}`] ?? 0) + 1;
  const unclear = outcomes.filter(
    (o) => o.kind !== 'export' && !(o.status === 200 || o.status === 201 || (o.status === 503 && o.retryAfter) || o.status === 504 || (o.kind === 'edit' && o.status === 409)),
  );
  // An export already streaming when its service or store dies cannot change its 200 any more: the
  // gateway cuts the chunked response without its last chunk, which every client sees as a failed
  // download. That is allowed only while the export service or the store is down.
  const exportOddities = outcomes.filter(
    (o) =>
      o.kind === 'export' &&
      !([200, 404].includes(o.status as number) || (o.status === 503 && o.retryAfter) || o.status === 504 || (o.status === 'network' && ['export down', 'store down'].includes(o.during))),
  );
  process.stdout.write(
    `resilience: injected ${injected.join('; ')}\n` +
      `resilience: ${outcomes.length} requests ${JSON.stringify(byStatus)}\n` +
      `resilience: acknowledged ${acknowledged.size} sync changes (${unacknowledged.size} resent), stored ${stored.length}, missing ${missing.length}, doubled ${doubled.length}\n`,
  );

  expect(missing).toEqual([]);
  expect(doubled).toEqual([]);
  expect(unclear).toEqual([]);
  expect(exportOddities).toEqual([]);
  expect(stack.procs.gateway.pid).toBe(gatewayPid);
  expect(stack.procs.gateway.exitCode).toBeNull();
  expect(stack.procs.health.exitCode).toBeNull();
  expect(healthDuring.redis).toMatchObject({ ok: (healthDuring.redis as { syncs: number }).syncs });
  for (const name of ['sync', 'workflow', 'export']) {
    expect([
      name,
      (healthDuring[name] as { degraded: boolean; services: Record<string, string> }).degraded,
      (healthDuring[name] as { services: Record<string, string> }).services[name] !== 'SERVING',
    ]).toEqual([name, true, true]);
  }
  expect((healthDuring.store as { degraded: boolean } | undefined)?.degraded).toBe(true);
});
