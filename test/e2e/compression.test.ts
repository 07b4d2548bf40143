/**
 * Compression through the real gateway: a 100-permit list page and the sync answer compressed for
 * clients that ask (≥ 4× fewer bytes, the same JSON), exports never; compressed sync bodies applied,
 * a gzip bomb or a chunked body past the limit refused with nothing applied.
 */
import http from 'node:http';
import zlib from 'node:zlib';
import mongoose, { type Connection } from 'mongoose';
import { registerModels, type Models } from '@ptw/db';
import { startTestStack, token } from '../support/stack';
import type { Stack } from '../../libs/devstore/src/stack';

jest.setTimeout(180_000);

let stack: Stack;
let conn: Connection;
let m: Models;
let worker: string;

interface Answer {
  status: number;
  headers: http.IncomingHttpHeaders;
  /** The bytes on the wire, before any decoding. */
  body: Buffer;
}

/** One request with the answer's raw bytes (fetch would decode them and hide their size). */
function call(method: string, path: string, headers: Record<string, string>, body?: Buffer): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const url = new URL(`${stack.gatewayUrl}${path}`);
    const req = http.request({ host: url.hostname, port: url.port, path: url.pathname + url.search, method, headers: { authorization: `Bearer ${worker}`, ...headers } }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode!, headers: res.headers, body: Buffer.concat(chunks) }));
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end(body);
  });
}

const DECODE: Record<string, (b: Buffer) => Buffer> = { gzip: zlib.gunzipSync, br: zlib.brotliDecompressSync };
const json = (a: Answer) => JSON.parse((a.headers['content-encoding'] ? DECODE[a.headers['content-encoding']](a.body) : a.body).toString('utf8'));

/** Deterministic but varied field text, so the page does not compress better than real permits would. */
function permits(n: number, device: string) {
  // mulberry32: a linear congruential generator's low bits would repeat with a short period.
  let seed = 7;
  const rnd = (k: number) => {
    seed = (seed + 0x6d2b79f5) | 0;
    let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return Math.floor((((t ^ (t >>> 14)) >>> 0) / 4294967296) * k);
  };
  const pick = <T>(xs: T[]) => xs[rnd(xs.length)];
  const equipment = [
    'pump',
    'mechanical seal',
    'gate valve',
    'flange gasket',
    'motor bearing',
    'conveyor belt',
    'boiler feed line',
    'storage tank',
    'compressor',
    'heat exchanger',
    'cable tray',
    'switchgear panel',
    'transformer',
    'relief valve',
  ];
  const areas = [
    'Unit 1 north bay',
    'Tank farm B',
    'Compressor house',
    'Substation 3',
    'Boiler room',
    'Loading dock 2',
    'Cooling tower',
    'Pipe rack 7',
    'Water treatment',
    'Flare stack area',
  ];
  const work = ['Replace', 'Inspect', 'Weld repair on', 'Isolate and drain', 'Re-torque', 'Cut out and renew', 'Grind and paint', 'Hydro-test'];
  const controls = [
    'Gas test before start and every 2 h',
    'Fire watch for 30 min after hot work',
    'Barricade 5 m radius',
    'Drain and purge with nitrogen',
    'LOTO on feeder breaker',
    'Spark-proof tools only',
    'Standby person at the manway',
    'Wind below 30 km/h',
  ];
  const ppe = ['helmet', 'safety glasses', 'face shield', 'FR coveralls', 'welding gloves', 'harness', 'SCBA', 'hearing protection', 'safety boots'];
  const start = Date.now() + 3600_000;
  return Array.from({ length: n }, (_, i) => {
    const tag = `${pick(['P', 'V', 'E', 'T', 'K'])}-${100 + rnd(900)}${pick(['A', 'B', ''])}`;
    const what = `${pick(work)} ${pick(equipment)} ${tag}`;
    return {
      entity: 'permit',
      op: 'create',
      offline_id: `${device}-${i}`,
      data: {
        permit_type_id: pick(['hot-work', 'electrical-isolation']),
        title: what,
        description: `${what} in ${pick(areas)}. Work order WO-${200000 + rnd(800000)}; ${rnd(6) + 1} technicians, ${pick(['day', 'night'])} shift. ${pick(controls)}.`,
        location: `${pick(areas)}, grid ${String.fromCharCode(65 + rnd(12))}${rnd(40)}`,
        priority: pick(['low', 'medium', 'high', 'critical']),
        probability: rnd(5) + 1,
        severity: rnd(5) + 1,
        control_measures: `${pick(controls)}. ${pick(controls)}.`,
        ppe_requirements: [...new Set([pick(ppe), pick(ppe), pick(ppe)])],
        safety_checklist: { gas_test: rnd(2) === 1, area_barricaded: rnd(2) === 1, fire_extinguisher: rnd(2) === 1 },
        planned_start_time: new Date(start + rnd(72) * 3600_000).toISOString(),
        planned_end_time: new Date(start + (80 + rnd(48)) * 3600_000).toISOString(),
      },
    };
  });
}

const SYNC = '/api/v1/ptw/sync-offline-data/';
const JSON_BODY = { 'content-type': 'application/json' };

beforeAll(async () => {
  stack = await startTestStack('compression', { PTW_THROTTLE_SYNC: '1000/min' });
  conn = await mongoose.createConnection(stack.mongoUrl).asPromise();
  m = registerModels(conn);
  worker = await token('u-worker', 'worker', ['p1']);
});

afterAll(async () => {
  await conn?.close();
  await stack?.stop();
});

it('when 100 permits are synced in one gzip body asking for br, and their page is read with and without Accept-Encoding, then it is ≥ 4× smaller compressed and decodes to the same JSON', async () => {
  const sync = await call(
    'POST',
    SYNC,
    { ...JSON_BODY, 'content-encoding': 'gzip', 'accept-encoding': 'br' },
    zlib.gzipSync(JSON.stringify({ device_id: 'tab-zip', changes: permits(100, 'zip') })),
  );
  expect([sync.status, sync.headers['content-encoding'], sync.headers['x-request-id']]).toEqual([200, 'br', expect.any(String)]);
  expect(json(sync).summary).toEqual({ total: 100, applied: 100, conflicts: 0, rejected: 0 });

  const list = '/api/v1/ptw/permits/?page_size=100';
  const identity = await call('GET', list, {});
  const gzip = await call('GET', list, { 'accept-encoding': 'gzip' });
  const br = await call('GET', list, { 'accept-encoding': 'br' });
  const plain = json(identity);
  expect(plain.results).toHaveLength(100);
  expect([identity.headers['content-encoding'], identity.headers['content-length']]).toEqual([undefined, String(identity.body.length)]);
  expect([gzip.headers['content-encoding'], br.headers['content-encoding']]).toEqual(['gzip', 'br']);
  expect(json(gzip)).toEqual(plain);
  expect(json(br)).toEqual(plain);
  for (const a of [gzip, br]) expect(a.headers['x-request-id']).toMatch(/^[0-9a-f-]{36}$/);
  const figures = {
    identity: identity.body.length,
    gzip: gzip.body.length,
    br: br.body.length,
    gzip_ratio: +(identity.body.length / gzip.body.length).toFixed(2),
    br_ratio: +(identity.body.length / br.body.length).toFixed(2),
  };
  console.log(`100-permit page bytes: ${JSON.stringify(figures)}`);
  expect(figures.gzip_ratio).toBeGreaterThanOrEqual(4);
  expect(figures.br_ratio).toBeGreaterThanOrEqual(4);
});

it('when the sync body is a small gzip bomb (its JSON past the body limit once inflated), then 413 with the error shape and none of its changes is applied', async () => {
  const before = await m.Permit.countDocuments();
  // Valid JSON all the way: whitespace after the document, which a reader that counted compressed
  // bytes would accept and apply.
  const bomb = zlib.gzipSync(JSON.stringify({ device_id: 'tab-bomb', changes: permits(3, 'bomb') }) + ' '.repeat(16 * 1024 * 1024));
  expect(bomb.length).toBeLessThan(64 * 1024);
  const res = await call('POST', SYNC, { ...JSON_BODY, 'content-encoding': 'gzip' }, bomb);
  expect(res.status).toBe(413);
  expect(json(res)).toEqual({ error: { code: 'payload_too_large', message: expect.stringMatching(/^Request body exceeds \d+ bytes$/), details: { limit_bytes: expect.any(Number) } } });
  expect(await m.Permit.countDocuments()).toBe(before);
  expect(await m.SyncEvent.countDocuments({ device_id: 'tab-bomb' })).toBe(0);
});

it('when a sync body is chunked past the limit, then the client reads a 413 and nothing is applied', async () => {
  const before = await m.Permit.countDocuments();
  const head = Buffer.from(JSON.stringify({ device_id: 'tab-chunked', changes: permits(3, 'chunked') }).slice(0, -1));
  const pad = Buffer.alloc(64 * 1024, 0x20);
  let sent = 0;
  const body = new ReadableStream<Uint8Array>({
    pull(c) {
      if (sent++ === 0) c.enqueue(head);
      else if (sent < 64) c.enqueue(pad);
      else c.close();
    },
  });
  const res = await fetch(`${stack.gatewayUrl}${SYNC}`, { method: 'POST', headers: { authorization: `Bearer ${worker}`, ...JSON_BODY }, body, duplex: 'half' });
  expect(res.status).toBe(413);
  expect(((await res.json()) as { error: { code: string; message: string } }).error.code).toBe('payload_too_large');
  expect(await m.Permit.countDocuments()).toBe(before);
});

it('when a client accepts gzip and br, then the ZIP and XLSX exports come as they are, and /metrics gzipped', async () => {
  const manager = await token('u-manager', 'manager', ['p1']);
  const ids = (await m.Permit.find({ project_id: 'p1' }, { _id: 1 }).limit(2).lean()).map((p) => String(p._id));
  for (const [path, type] of [
    ['/api/v1/ptw/permits/bulk_export_pdf/', 'application/zip'],
    ['/api/v1/ptw/permits/bulk_export_excel/', 'application/vnd.openxmlformats-officedocument.spreadsheetml.sheet'],
  ]) {
    const res = await call('POST', path, { ...JSON_BODY, authorization: `Bearer ${manager}`, 'accept-encoding': 'gzip, br' }, Buffer.from(JSON.stringify({ permit_ids: ids })));
    expect([res.status, res.headers['content-type'], res.headers['content-encoding']]).toEqual([200, type, undefined]);
    expect(res.body.subarray(0, 2).toString()).toBe('PK');
  }
  const metrics = await call('GET', '/metrics', { 'accept-encoding': 'gzip' });
  expect(metrics.headers['content-encoding']).toBe('gzip');
  expect(zlib.gunzipSync(metrics.body).toString()).toContain('ptw_http_requests_total');
});
