/**
 * Property-based fuzz of issue 23 (item 8), against one real stack: for every route's request
 * schema, fast-check builds valid requests and mutates them with the hostile classes of the issue —
 * NUL and lone surrogates, dotted / `$` / NUL / empty / long keys in free-form objects, int32 and
 * int53 edges, wide and deep objects, strings at and past their limits (ASCII, CJK, emoji), and
 * answers that could outgrow the hop (stale edits of permits at their maximum sizes).
 *
 * Every request: no 5xx, an `X-Request-Id`, an answer within {@link ANSWER_BOUND_MS}; every non-2xx
 * has SPEC §4's error shape with details of at most 16 KiB and nothing internal; every 4xx leaves
 * the store as it was (all domain collections compared document by document, hashed, before and
 * after). A sync batch accounts for every change, and a rejected or conflicting change leaves no
 * trace. Where the outcome is known from the request alone (one mutation of a valid create, a
 * page number), the exact status and the named field are asserted too.
 *
 * Bounded: PTW_FUZZ_SCALE (default 1) scales every property's runs; PTW_FUZZ_SEED replays a seed
 * (fast-check prints the seed and path of a failure).
 */
import crypto from 'node:crypto';
import fc from 'fast-check';
import mongoose, { type Connection } from 'mongoose';
import { registerModels, type Models } from '@ptw/db';
import { startTestStack, token } from '../support/stack';
import type { Stack } from '../../libs/devstore/src/stack';

jest.setTimeout(240_000);

const SEED = Number(process.env.PTW_FUZZ_SEED ?? 230008);
const SCALE = Number(process.env.PTW_FUZZ_SCALE ?? 1);
/** Every answer, however hostile the request, arrives within this (the issue asks for a second on its rows; fuzz runs beside a loaded 2-core machine). */
const ANSWER_BOUND_MS = 5000;
/** SPEC §4 / the OpenAPI: error details are capped at 16 KiB. */
const MAX_DETAILS_BYTES = 16 * 1024;
/** Collections written by reads, jobs or bookkeeping (events, caches, tallies): not compared. */
const NOT_COMPARED = new Set(['job_runs', 'job_states', 'agendaJobs', 'kpi_snapshots', 'tallies', 'tally_rollups', 'sync_events', 'export_events']);
const INTERNAL = /\n\s+at |MongoServerError|MongoBulkWriteError|E11000|invalid int32|serialization failure|ECONNREFUSED|ObjectId\(|Cannot read prop|is not a function|undefined is not/;

let stack: Stack;
let conn: Connection;
let m: Models;
let MGR = '';
const api = (p: string) => `${stack.gatewayUrl}/api/v1/ptw${p}`;

// ---------------------------------------------------------------------------------------------
// Requests, answers and the store

/** A JSON literal written as is into a body (numbers JSON.stringify cannot write: -0, 1e400, 2^53+1; nesting too deep to build as objects). */
class Raw {
  constructor(readonly text: string) {}
}
type Json = null | boolean | number | string | Raw | Json[] | { [k: string]: Json };

function serialize(v: Json): string {
  const raws: string[] = [];
  const s = JSON.stringify(v, (_k, x) => (x instanceof Raw ? `\u0002${raws.push(x.text) - 1}\u0002` : x));
  return s.replace(/"\\u0002(\d+)\\u0002"/g, (_, i: string) => raws[Number(i)]);
}

interface Req {
  method: string;
  path: string;
  body?: string;
  label: string;
}
interface Answer {
  status: number;
  ms: number;
  text: string;
  json: any;
  headers: Headers;
}

/** Requests sent per class and per route, and answers per status. */
const tally = { byClass: new Map<string, number>(), byRoute: new Map<string, number>(), byStatus: new Map<number, number>(), slowest: 0 };
const bump = <K>(map: Map<K, number>, k: K) => map.set(k, (map.get(k) ?? 0) + 1);

let compared: string[] = [];
type Snapshot = Record<string, string>;
let cached: Snapshot | undefined;

/** Count and hash of every document of every compared collection, sorted by _id. */
async function snapshot(): Promise<Snapshot> {
  const hashes = await Promise.all(
    compared.map(async (name) => {
      const docs = await conn
        .db!.collection(name)
        .find({}, { sort: { _id: 1 } })
        .toArray();
      return `${docs.length}:${crypto.createHash('sha256').update(JSON.stringify(docs)).digest('hex').slice(0, 16)}`;
    }),
  );
  return Object.fromEntries(compared.map((name, i) => [name, hashes[i]]));
}
/** The store changed outside a checked request (setup, a fixture, a direct write). */
const storeTouched = () => (cached = undefined);

function describeReq(r: Req): string {
  const body = r.body === undefined ? '' : ` ${r.body.length > 400 ? `${r.body.slice(0, 400)}…(${r.body.length} chars)` : r.body}`;
  return `${r.label}: ${r.method} ${r.path.length > 300 ? `${r.path.slice(0, 300)}…` : r.path}${body}`;
}

/**
 * Sends one request and checks what holds for every request: no 5xx, a request id, an answer in
 * time, SPEC §4's error shape for every non-2xx (details capped, nothing internal), and for every
 * 4xx a store unchanged. Returns the answer for the route's own checks.
 */
async function send(r: Req, classes: string[], opts: { bound?: number } = {}): Promise<Answer> {
  const before = cached ?? (await snapshot());
  const started = Date.now();
  const res = await fetch(api(r.path), {
    method: r.method,
    headers: { authorization: `Bearer ${MGR}`, 'content-type': 'application/json' },
    body: r.body,
    signal: AbortSignal.timeout(30_000),
  });
  const text = await res.text();
  const ms = Date.now() - started;
  tally.slowest = Math.max(tally.slowest, ms);
  for (const c of new Set(classes)) bump(tally.byClass, c);
  bump(tally.byRoute, r.label);
  bump(tally.byStatus, res.status);
  const problems: string[] = [];
  if (res.status >= 500) problems.push(`answered ${res.status}`);
  if (!res.headers.get('x-request-id')) problems.push('no X-Request-Id');
  if (ms > (opts.bound ?? ANSWER_BOUND_MS)) problems.push(`answered after ${ms} ms (bound ${opts.bound ?? ANSWER_BOUND_MS})`);
  let json: any;
  const type = res.headers.get('content-type') ?? '';
  if (type.includes('json')) {
    try {
      json = JSON.parse(text);
    } catch {
      problems.push('body is not JSON');
    }
  }
  if (res.status >= 300) {
    const e = json?.error;
    const shape =
      json &&
      typeof json === 'object' &&
      Object.keys(json).join() === 'error' &&
      e &&
      typeof e.code === 'string' &&
      e.code !== '' &&
      typeof e.message === 'string' &&
      Object.keys(e).every((k) => ['code', 'message', 'details'].includes(k));
    if (!shape) problems.push('not SPEC §4 error shape {"error":{"code","message","details"?}}');
    if (e?.details !== undefined && Buffer.byteLength(JSON.stringify(e.details)) > MAX_DETAILS_BYTES)
      problems.push(`details of ${Buffer.byteLength(JSON.stringify(e.details))} bytes (cap ${MAX_DETAILS_BYTES})`);
    if (Array.isArray(e?.details?.errors) && e.details.errors.length > 20) problems.push(`${e.details.errors.length} listed errors (cap 20)`);
    if (INTERNAL.test(text)) problems.push(`internal detail in the body: ${INTERNAL.exec(text)?.[0]}`);
  }
  let after: Snapshot | undefined;
  if (res.status >= 400 && res.status < 500) {
    after = await snapshot();
    const changed = compared.filter((c) => before[c] !== after![c]);
    if (changed.length) problems.push(`a ${res.status} changed the store: ${changed.map((c) => `${c} ${before[c]} → ${after![c]}`).join(', ')}`);
  }
  // A 4xx leaves the store as it was: its snapshot serves the next request; anything else is read again.
  cached = after;
  if (problems.length) throw new Error(`${describeReq(r)}\n→ ${res.status} in ${ms} ms: ${problems.join('; ')}\n  answer: ${text.slice(0, 600)}`);
  return { status: res.status, ms, text, json, headers: res.headers };
}

/** A call of the setup (not fuzz): must succeed. */
async function setup(method: string, path: string, body?: unknown, tok = MGR): Promise<any> {
  const res = await fetch(api(path), {
    method,
    headers: { authorization: `Bearer ${tok}`, 'content-type': 'application/json' },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await res.text();
  storeTouched();
  if (res.status >= 300) throw new Error(`setup ${method} ${path} → ${res.status} ${text.slice(0, 300)}`);
  return text ? JSON.parse(text) : undefined;
}

/** Runs a property with a fixed seed and a time limit, and fails when it ran fewer than half its runs. */
async function property<T>(name: string, arb: fc.Arbitrary<T>, numRuns: number, limitMs: number, run: (v: T) => Promise<void>): Promise<void> {
  const runs = Math.max(1, Math.round(numRuns * SCALE));
  let executed = 0;
  const started = Date.now();
  await fc.assert(
    fc.asyncProperty(arb, async (v) => {
      executed++;
      await run(v);
    }),
    { seed: SEED, numRuns: runs, interruptAfterTimeLimit: limitMs * SCALE, markInterruptAsFailure: false, verbose: 1 },
  );
  process.stdout.write(`fuzz/properties ${name}: ${executed} runs in ${Date.now() - started} ms\n`);
  // A property interrupted by its time limit passes in fast-check: it must still have run.
  expect({ name, executedAtLeastHalf: executed >= Math.ceil(runs / 2) }).toEqual({ name, executedAtLeastHalf: true });
}

// ---------------------------------------------------------------------------------------------
// The hostile classes, as mutations of a valid JSON body

const LONE = ['\u0000', '\ud800', '\udfff', '\udfff\ud800', 'a\u0000\ud800'];
const EMOJI = '🦺';

/** Keys a free-form object cannot (or can just) hold. */
const hostileKey = fc.oneof(
  fc.constantFrom('a.b', '.', 'gas.test', '$gt', '$', '$where', '\u0000', 'a\u0000', '', '\ud800', 'ok_key', '__proto__', 'constructor'),
  fc.integer({ min: 99, max: 5000 }).map((n) => 'k'.repeat(n)),
  fc.tuple(fc.integer({ min: 1, max: 300 }), fc.constantFrom('.', '$', '\u0000')).map(([n, c]) => (c === '$' ? `$${'k'.repeat(n)}` : `${'k'.repeat(n)}${c}k`)),
);
/** int32 / int53 edges, -0, floats where ints are expected, numbers as strings, non-finite literals. */
const numberLiteral = fc.constantFrom(
  '2147483647',
  '2147483648',
  '-2147483648',
  '-2147483649',
  '4294967296',
  '9007199254740991',
  '9007199254740992',
  '9007199254740993',
  '-9007199254740993',
  '-0',
  '0',
  '-1',
  '1',
  '1.0',
  '1.5',
  '5.000000001',
  '5e-324',
  '1e308',
  '-1e308',
  '1e400',
  '"NaN"',
  '"1"',
  '"Infinity"',
  'null',
  'true',
  '[]',
  '{}',
);

type Mutation =
  | { cls: 'nul'; at: number; ch: string; pos: number; key: boolean }
  | { cls: 'keys'; at: number; key: string }
  | { cls: 'numbers'; at: number; lit: string }
  | { cls: 'wide'; at: number; n: number }
  | { cls: 'deep'; at: number; depth: number; arr: boolean }
  | { cls: 'limits'; at: number; unit: string; delta: number };

const mutationArb: fc.Arbitrary<Mutation> = fc.oneof(
  fc.record({ cls: fc.constant('nul' as const), at: fc.nat(), ch: fc.constantFrom(...LONE), pos: fc.nat(), key: fc.boolean() }),
  fc.record({ cls: fc.constant('keys' as const), at: fc.nat(), key: hostileKey }),
  fc.record({ cls: fc.constant('numbers' as const), at: fc.nat(), lit: numberLiteral }),
  fc.record({ cls: fc.constant('wide' as const), at: fc.nat(), n: fc.oneof(fc.integer({ min: 100, max: 400 }), fc.integer({ min: 2000, max: 3000 })) }),
  fc.record({ cls: fc.constant('deep' as const), at: fc.nat(), depth: fc.constantFrom(31, 32, 33, 64, 1000, 1500, 5000), arr: fc.boolean() }),
  fc.record({ cls: fc.constant('limits' as const), at: fc.nat(), unit: fc.constantFrom('a', '漢', EMOJI), delta: fc.constantFrom(-1, 0, 1) }),
);

/** Maximum lengths of the string fields of the request schemas (by field name; an array's items by the array's name). */
const LIMITS: Record<string, number> = {
  title: 200,
  description: 5000,
  location: 500,
  control_measures: 5000,
  ppe_requirements: 100,
  comments: 2000,
  notes: 2000,
  remarks: 5000,
  name: 200,
  energy_type: 50,
  lock_ids: 100,
  permit_ids: 64,
  point_id: 64,
  status: 40,
  device_id: 128,
  offline_id: 128,
  server_id: 64,
  entity: 40,
  op: 40,
};
/** Free-form objects (keys are data) and the value their entries hold. */
const FREE: Record<string, () => Json> = { safety_checklist: () => true, checklist: () => ({ done: true }), data: () => 'v' };
/** Numeric fields to target even when the base body lacks them. */
const NUMERIC = ['version', 'client_version', 'probability', 'severity'];

type Path = (string | number)[];
interface Node {
  path: Path;
  parent: any;
  key: string | number;
  value: Json;
}

function nodes(root: Json): Node[] {
  const out: Node[] = [];
  const walk = (v: Json, path: Path, parent: any, key: string | number) => {
    out.push({ path, parent, key, value: v });
    if (v instanceof Raw || v === null || typeof v !== 'object') return;
    if (Array.isArray(v)) v.forEach((x, i) => walk(x, [...path, i], v, i));
    else for (const [k, x] of Object.entries(v)) walk(x, [...path, k], v, k);
  };
  walk(root, [], undefined, '');
  return out;
}
const isObj = (v: Json): v is { [k: string]: Json } => !!v && typeof v === 'object' && !Array.isArray(v) && !(v instanceof Raw);
const pick = <T>(xs: T[], at: number): T | undefined => (xs.length ? xs[at % xs.length] : undefined);
const insertAt = (s: string, ch: string, pos: number) => s.slice(0, pos % (s.length + 1)) + ch + s.slice(pos % (s.length + 1));
/** Sets an own property, whatever the key (`__proto__` included: JSON.parse makes it an own key too). */
const setKey = (obj: Record<string, Json>, k: string, v: Json) => Object.defineProperty(obj, k, { value: v, enumerable: true, writable: true, configurable: true });
/** Renames a key in place, keeping the key order. */
function renameKey(obj: Record<string, Json>, from: string, to: string) {
  const entries = Object.entries(obj).map(([k, v]) => [k === from ? to : k, v] as const);
  for (const k of Object.keys(obj)) delete obj[k];
  for (const [k, v] of entries) setKey(obj, k, v);
}
const lastName = (path: Path) => {
  const named = path.filter((p) => typeof p === 'string');
  return named[named.length - 1] as string | undefined;
};
const freeName = (path: Path) => (typeof path[path.length - 1] === 'string' && FREE[path[path.length - 1] as string] ? (path[path.length - 1] as string) : undefined);

/** What one mutation did, for the routes' exact expectations. */
interface Applied {
  cls: Mutation['cls'];
  path: Path;
  /** keys: the key added; limits: the string's length in UTF-16 units and its limit; numbers: the parsed literal. */
  key?: string;
  length?: number;
  limit?: number;
  value?: unknown;
  n?: number;
  asKey?: boolean;
  unit?: string;
}

/** Applies a mutation to `root` (in place) and says where. */
function mutate(root: Json, mu: Mutation): Applied {
  const all = nodes(root);
  const objects = all.filter((n) => isObj(n.value));
  switch (mu.cls) {
    case 'nul': {
      const strings = all.filter((n) => typeof n.value === 'string');
      const keyed = all.filter((n) => n.path.length > 0 && typeof n.key === 'string');
      if (mu.key || strings.length === 0) {
        const n = pick(keyed, mu.at);
        if (n) {
          renameKey(n.parent, n.key as string, insertAt(n.key as string, mu.ch, mu.pos));
          return { cls: 'nul', path: n.path, asKey: true };
        }
      }
      const n = pick(strings, mu.at);
      if (!n) {
        (root as Record<string, Json>)[insertAt('k', mu.ch, mu.pos)] = 'v';
        return { cls: 'nul', path: [], asKey: true };
      }
      n.parent[n.key] = insertAt(n.value as string, mu.ch, mu.pos);
      return { cls: 'nul', path: n.path };
    }
    case 'keys': {
      const free = objects.filter((n) => freeName(n.path));
      const n = pick(free.length ? free : objects, mu.at)!;
      const name = freeName(n.path);
      setKey(n.value as Record<string, Json>, mu.key, name ? FREE[name]() : 'v');
      return { cls: 'keys', path: n.path, key: mu.key };
    }
    case 'numbers': {
      const targets = all.filter((n) => typeof n.value === 'number' || (typeof n.key === 'string' && NUMERIC.includes(n.key)));
      const n = pick(targets, mu.at);
      const value = mu.lit === '1e400' ? Infinity : mu.lit === '-0' ? -0 : JSON.parse(mu.lit);
      if (n) {
        n.parent[n.key] = new Raw(mu.lit);
        return { cls: 'numbers', path: n.path, value };
      }
      const obj = pick(objects, mu.at)!;
      const key = NUMERIC[mu.at % NUMERIC.length];
      (obj.value as Record<string, Json>)[key] = new Raw(mu.lit);
      return { cls: 'numbers', path: [...obj.path, key], value };
    }
    case 'wide': {
      const n = pick(objects, mu.at)!;
      const name = freeName(n.path);
      for (let i = 0; i < mu.n; i++) (n.value as Record<string, Json>)[`f${i}`] = name ? FREE[name]() : i;
      return { cls: 'wide', path: n.path, n: mu.n };
    }
    case 'deep': {
      const targets = all.filter((n) => n.path.length > 0);
      const n = pick(targets, mu.at) ?? { path: ['a'], parent: root, key: 'a', value: null };
      n.parent[n.key] = new Raw(mu.arr ? `${'['.repeat(mu.depth)}1${']'.repeat(mu.depth)}` : `${'{"a":'.repeat(mu.depth)}1${'}'.repeat(mu.depth)}`);
      return { cls: 'deep', path: n.path, n: n.path.length + mu.depth - 1 };
    }
    case 'limits': {
      const limitOf = (n: Node) => (typeof n.value === 'string' ? LIMITS[lastName(n.path) ?? ''] : undefined);
      const strings = all.filter((n) => limitOf(n) !== undefined);
      const keyed = all.filter((n) => n.path.length > 1 && typeof n.key === 'string' && freeName(n.path.slice(0, -1)));
      const targets = [...strings, ...keyed];
      const n = pick(targets, mu.at);
      if (!n) return { cls: 'limits', path: [] };
      const limit = limitOf(n) ?? 100;
      const count = Math.floor(limit / mu.unit.length) + mu.delta;
      const s = mu.unit.repeat(count);
      if (typeof n.value === 'string' && strings.includes(n)) {
        n.parent[n.key] = s;
        return { cls: 'limits', path: n.path, length: s.length, limit, unit: mu.unit };
      }
      renameKey(n.parent, n.key as string, s);
      return { cls: 'limits', path: [...n.path.slice(0, -1), s], length: s.length, limit, asKey: true, unit: mu.unit };
    }
  }
}

// ---------------------------------------------------------------------------------------------
// The world: fixtures the routes act on

const hour = 3600_000;
let seq = 0;
const w = {
  patchDraft: '',
  transitionPermit: '',
  isoPermit: '',
  closeoutPermit: '',
  exportPermit: '',
  notificationId: '',
  foreignPermit: '',
  fullPermit: '',
  fullCloseoutPermit: '',
  sync: { update: '', status: '', point: '', closeout: '' },
};
const CJK = (n: number, ch = '漢') => ch.repeat(n);
const fullFields = (ch = '漢') => ({
  title: CJK(200, ch),
  description: CJK(5000, ch),
  location: CJK(500, ch),
  control_measures: CJK(5000, ch),
  ppe_requirements: Array.from({ length: 50 }, (_, i) => `${i}${CJK(98, ch)}`),
  safety_checklist: Object.fromEntries(Array.from({ length: 100 }, (_, i) => [`${i}${CJK(98, ch)}`, true])),
});

const createBody = (): Json => ({
  permit_type_id: 'hot-work',
  title: 'Fuzz weld',
  description: 'Weld the bracket',
  location: 'Unit 3',
  priority: 'low',
  probability: 2,
  severity: 3,
  control_measures: 'Fire watch',
  ppe_requirements: ['helmet', 'gloves'],
  safety_checklist: { gas_test: true, extinguisher: false },
  planned_start_time: new Date(Date.now() + hour).toISOString(),
  planned_end_time: new Date(Date.now() + 100 * hour).toISOString(),
});

async function newPermit(extra: Record<string, unknown> = {}, status?: string): Promise<string> {
  const p = await setup('POST', '/permits/', { ...(createBody() as object), ...extra });
  if (status) {
    await m.Permit.updateOne({ _id: p.id }, { $set: { status } });
    storeTouched();
  }
  return p.id as string;
}
const versionOf = async (id: string) => (await m.Permit.findById(id, { version: 1 }).lean())!.version;
const statusOf = async (id: string) => (await m.Permit.findById(id, { status: 1 }).lean())!.status as string;

/** An isolation point of `permit` that can still move (assigned, isolated or verified), added when none is left. */
async function livePoint(permit: string): Promise<{ id: string; status: string; version: number }> {
  let p = await m.IsolationPoint.findOne({ permit_id: permit, status: { $ne: 'deisolated' } }).lean();
  if (!p) {
    await setup('POST', `/permits/${permit}/assign_isolation/`, { name: `Breaker ${++seq}`, energy_type: 'electrical', lock_ids: [] });
    p = await m.IsolationPoint.findOne({ permit_id: permit, status: { $ne: 'deisolated' } }).lean();
  }
  return { id: String(p!._id), status: p!.status, version: p!.version };
}
const NEXT_ACTION: Record<string, string> = { assigned: 'isolate', isolated: 'verify', verified: 'deisolate' };
const NEXT_STATUS: Record<string, string> = { assigned: 'isolated', isolated: 'verified', verified: 'deisolated' };

/** A permit in a status the closeout can change in, with a closeout not completed. */
async function openCloseout(): Promise<string> {
  const c = await m.Closeout.findOne({ permit_id: w.closeoutPermit }).lean();
  if (c?.completed) w.closeoutPermit = await newPermit({}, 'active');
  return w.closeoutPermit;
}

beforeAll(async () => {
  const started = Date.now();
  stack = await startTestStack('fuzz_props', {
    PTW_THROTTLE_SYNC: '1000000/min',
    PTW_THROTTLE_BULK_EXPORT: '1000000/hour',
    PTW_THROTTLE_KPI: '1000000/min',
    PTW_THROTTLE_NOTIFICATIONS: '1000000/min',
    // No scheduled job may write while documents are compared.
    PTW_JOBS_WORKER: 'false',
  });
  conn = await mongoose.createConnection(stack.mongoUrl).asPromise();
  m = registerModels(conn);
  MGR = await token('u-manager', 'manager', ['p1']);

  w.patchDraft = await newPermit();
  w.transitionPermit = await newPermit();
  w.isoPermit = await newPermit({ permit_type_id: 'electrical-isolation' }, 'active');
  await livePoint(w.isoPermit);
  w.closeoutPermit = await newPermit({}, 'active');
  w.exportPermit = await newPermit({ title: 'Export only' });
  w.foreignPermit = (await setup('POST', '/permits/', { permit_type_id: 'hot-work', title: 'Another project' }, await token('u-worker-p2', 'worker', ['p2']))).id;
  const [n] = await m.Notification.create([
    { user_id: 'u-manager', type: 'ptw_expiring', title: 'Fuzz', message: 'Fuzz', data: {}, dedupe_key: 'fuzz-1', read: false, created_at: new Date() },
  ]);
  w.notificationId = String(n._id);
  w.sync.update = await newPermit();
  w.sync.status = await newPermit();
  const syncIso = await newPermit({ permit_type_id: 'electrical-isolation' }, 'active');
  w.sync.point = (await livePoint(syncIso)).id;
  w.sync.closeout = await newPermit({}, 'active');
  await setup('GET', `/permits/${w.sync.closeout}/closeout/`);
  // Permits at their maximum sizes (CJK), then edited once: every edit at version 1 is stale.
  w.fullPermit = await newPermit(fullFields());
  await setup('PATCH', `/permits/${w.fullPermit}/`, { version: 1, description: CJK(4999) });
  w.fullCloseoutPermit = await newPermit(fullFields(), 'active');
  await setup('POST', `/permits/${w.fullCloseoutPermit}/update_closeout/`, {
    remarks: CJK(5000),
    checklist: { area_cleaned: { comments: CJK(2000) }, fire_watch_done: { comments: CJK(2000) }, photos: { comments: CJK(2000) } },
  });

  const names = (await conn.db!.listCollections({}, { nameOnly: true }).toArray()).map((c) => c.name);
  compared = names.filter((n) => !NOT_COMPARED.has(n) && !n.startsWith('system.')).sort();
  for (const must of ['permits', 'isolation_points', 'closeouts', 'audit_events', 'revisions', 'notifications']) expect(compared).toContain(must);
  process.stdout.write(`fuzz/properties: stack and fixtures in ${Date.now() - started} ms\n`);
}, 120_000);

afterAll(async () => {
  const line = (mp: Map<unknown, number>) => JSON.stringify(Object.fromEntries([...mp].sort()));
  const total = [...tally.byRoute.values()].reduce((a, b) => a + b, 0);
  process.stdout.write(
    `fuzz/properties: ${total} requests; by class ${line(tally.byClass)}\n  by route ${line(tally.byRoute)}\n  by status ${line(tally.byStatus)}; slowest ${tally.slowest} ms; compared collections ${compared.join(', ')}\n`,
  );
  await conn?.close();
  await stack?.stop();
});

// ---------------------------------------------------------------------------------------------
// Bodies of every route with a body, mutated

interface BodyRoute {
  label: string;
  method: string;
  runs: number;
  path: () => Promise<string>;
  base: () => Promise<Json>;
  /** The exact outcome of a single mutation, where the request alone decides it. */
  expect?: (a: Applied, ans: Answer, sent: Json) => Promise<void>;
}

const fieldOf = (ans: Answer) => String(ans.json?.error?.details?.field ?? '');
const named = (path: Path) => path.map(String).join('.');

/** SPEC §2's limits and key rules on a create whose only mutation is `a`: the exact status and field. */
async function expectCreate(a: Applied, ans: Answer, sent: Json): Promise<void> {
  const at = named(a.path);
  const top = String(a.path[0] ?? '');
  const tag = { mutation: a.cls, at, status: ans.status };
  switch (a.cls) {
    case 'limits': {
      const fits = a.length! <= a.limit!;
      // UTF-16 units (what the server counts) or code points (JSON Schema's maxLength): only exact where they agree.
      if (a.unit === EMOJI && a.length! / 2 <= a.limit! && !fits) return;
      if (fits) {
        expect(tag).toEqual({ ...tag, status: 201 });
        if (!a.asKey) {
          const stored = await m.Permit.findById(ans.json.id).lean();
          let v: any = stored;
          for (const p of a.path) v = v?.[p];
          expect({ ...tag, stored: v }).toEqual({ ...tag, stored: a.path.reduce<any>((o, p) => o?.[p], sent) });
        }
      } else {
        expect({ ...tag, field: fieldOf(ans).startsWith(top) }).toEqual({ ...tag, status: 400, field: true });
      }
      return;
    }
    case 'keys': {
      if (top !== 'safety_checklist') return;
      const k = a.key!;
      if (k === '__proto__' || k === 'constructor') return;
      const ok = k.length >= 1 && k.length <= 100 && !k.includes('.') && !k.startsWith('$') && !k.includes('\u0000');
      if (ok) expect(tag).toEqual({ ...tag, status: 201 });
      else expect({ ...tag, field: fieldOf(ans).startsWith('safety_checklist') }).toEqual({ ...tag, status: 400, field: true });
      return;
    }
    case 'numbers': {
      const name = String(a.path[a.path.length - 1]);
      if (name !== 'probability' && name !== 'severity') return;
      const v = a.value;
      const ok = typeof v === 'number' && Number.isInteger(v) && v >= 1 && v <= 5;
      if (ok) expect(tag).toEqual({ ...tag, status: 201 });
      else expect({ ...tag, field: fieldOf(ans) }).toEqual({ ...tag, status: 400, field: name });
      return;
    }
    case 'wide':
      if (a.path.length === 0) {
        expect({ ...tag, listed: ans.json?.error?.details?.errors?.length, count: ans.json?.error?.details?.error_count }).toEqual({ ...tag, status: 400, listed: 20, count: a.n });
      } else if (top === 'safety_checklist') {
        expect(tag).toEqual({ ...tag, status: 400 });
      }
      return;
    case 'deep':
      expect(tag).toEqual({ ...tag, status: 400 });
      return;
    case 'nul':
      if (JSON.stringify(sent).includes('\\u0000')) expect(tag).toEqual({ ...tag, status: 400 });
      return;
  }
}

const bodyRoutes: BodyRoute[] = [
  { label: 'create permit', method: 'POST', runs: 90, path: async () => '/permits/', base: async () => createBody(), expect: expectCreate },
  {
    label: 'PATCH permit',
    method: 'PATCH',
    runs: 50,
    path: async () => `/permits/${w.patchDraft}/`,
    base: async () => ({
      version: await versionOf(w.patchDraft),
      title: `Edit ${++seq}`,
      description: 'd',
      location: 'l',
      probability: 3,
      severity: 2,
      ppe_requirements: ['helmet'],
      safety_checklist: { gas_test: true },
    }),
    expect: async (a, ans) => {
      if (a.cls !== 'numbers' || a.path.join() !== 'version') return;
      const v = a.value;
      const valid = typeof v === 'number' && Number.isInteger(v) && v >= 1 && v <= 2 ** 31 - 1;
      // The current version is small: a valid literal is stale (409), anything else names `version` (400).
      if (valid && v > 1000) expect({ lit: v, status: ans.status }).toEqual({ lit: v, status: 409 });
      if (!valid) expect({ lit: v, status: ans.status, field: fieldOf(ans) }).toEqual({ lit: v, status: 400, field: 'version' });
    },
  },
  {
    label: 'transition',
    method: 'POST',
    runs: 30,
    path: async () => {
      if (!['draft', 'submitted'].includes(await statusOf(w.transitionPermit))) w.transitionPermit = await newPermit();
      return `/permits/${w.transitionPermit}/transition/`;
    },
    base: async () => ({ status: (await statusOf(w.transitionPermit)) === 'draft' ? 'submitted' : 'draft', comments: 'Ready for review' }),
  },
  {
    label: 'assign isolation',
    method: 'POST',
    runs: 25,
    path: async () => `/permits/${w.isoPermit}/assign_isolation/`,
    base: async () =>
      ++seq % 2
        ? { name: 'Breaker 7', energy_type: 'electrical', required: true, lock_ids: ['L-1'] }
        : { points: [{ name: 'Valve 3', energy_type: 'hydraulic', required: false, lock_ids: ['L-2', 'L-3'] }] },
  },
  {
    label: 'update isolation',
    method: 'POST',
    runs: 25,
    path: async () => `/permits/${w.isoPermit}/update_isolation/`,
    base: async () => {
      const p = await livePoint(w.isoPermit);
      return { point_id: p.id, action: NEXT_ACTION[p.status], lock_ids: ['L-9'], notes: 'Locked out' };
    },
  },
  {
    label: 'update closeout',
    method: 'POST',
    runs: 30,
    path: async () => `/permits/${await openCloseout()}/update_closeout/`,
    base: async () => ({ checklist: { area_cleaned: { done: true, comments: 'Swept' }, photos: { done: false } }, remarks: 'All good' }),
  },
  { label: 'complete closeout', method: 'POST', runs: 12, path: async () => `/permits/${await openCloseout()}/complete_closeout/`, base: async () => ({}) },
  { label: 'export pdf', method: 'POST', runs: 12, path: async () => '/permits/bulk_export_pdf/', base: async () => ({ permit_ids: [w.exportPermit], use_filters: false, detailed: false }) },
  {
    label: 'export excel',
    method: 'POST',
    runs: 12,
    path: async () => '/permits/bulk_export_excel/',
    base: async () => ({ permit_ids: [w.exportPermit], use_filters: false, detailed: true }),
  },
  { label: 'notifications mark-all-read', method: 'POST', runs: 10, path: async () => '/notifications/mark-all-read/', base: async () => ({}) },
];

describe('bodies of every route, mutated with the hostile classes', () => {
  for (const route of bodyRoutes) {
    it(`when a ${route.label} body carries NUL/surrogates, hostile keys, number edges, wide or deep objects or strings at their limits, then no 5xx, SPEC §4 errors and a 4xx changes nothing`, async () => {
      await property(route.label, fc.array(mutationArb, { minLength: 1, maxLength: 2 }), route.runs, 40_000, async (plan) => {
        const path = await route.path();
        const body = await route.base();
        const applied = plan.map((mu) => mutate(body, mu));
        const ans = await send(
          { method: route.method, path, body: serialize(body), label: route.label },
          plan.map((p) => p.cls),
        );
        if (plan.length === 1 && route.expect) await route.expect(applied[0], ans, body);
      });
    });
  }
});

// ---------------------------------------------------------------------------------------------
// Query strings of the lists and reads

/** A query value: `raw` is already percent-encoded (NUL, the UTF-8 of a lone surrogate, broken escapes). */
type QValue = { cls: string; raw: string };
const enc =
  (cls: string) =>
  (s: string): QValue => ({ cls, raw: encodeURIComponent(s) });
const PAGE_VALID = ['1', '2', '100', '2147483647'];
const PAGE_INVALID = ['0', '-1', '-0', '1.5', '1e3', '1e308', 'NaN', 'Infinity', '0x10', '2147483648', '4294967296', '9007199254740991', '9007199254740993', '-2147483649'];
const queryValue: fc.Arbitrary<QValue> = fc.oneof(
  fc
    .tuple(
      fc.constantFrom('', 'draft', 'draft,active', 'hot-work', 'p1', '2026-01-01', 'weld'),
      fc.constantFrom('%00', '%ED%A0%80', '%ED%BF%BF', '%C0%80', '%E0%A4%A', '%', '%00%ED%A0%80'),
      fc.nat(),
    )
    .map(([s, bad, pos]) => {
      const e = encodeURIComponent(s);
      const at = pos % (e.length + 1);
      return { cls: 'nul', raw: e.slice(0, at).replace(/%[0-9A-F]?$/, '') + bad + e.slice(at) };
    }),
  fc.constantFrom(...PAGE_VALID, ...PAGE_INVALID, '101', '00000000001', ' 1', '+1').map(enc('numbers')),
  fc
    .tuple(fc.constantFrom('a', '漢', EMOJI), fc.constantFrom(40, 64, 100, 128, 129, 300), fc.constantFrom(-1, 0, 1))
    .map(([u, n, d]) => enc('limits')(u.repeat(Math.max(0, Math.floor(n / u.length) + d)))),
  fc
    .constantFrom(
      '9999-12-31T23:59:59Z',
      '+275760-09-13T00:00:00Z',
      '0000-01-01',
      '2024-02-30',
      '2024-13-01',
      '1970-01-01T00:00:00.000000000Z',
      '2024-01-01T00:00:00+99:99',
      '-000001-01-01T00:00:00Z',
      '2024-01-01T25:00',
    )
    .map(enc('dates')),
  fc.constantFrom('draft,,,', ',', 'a'.repeat(40) + ',' + 'b'.repeat(41), Array(500).fill('draft').join(','), '$gt', '{"$gt":""}', '.*', '(a+)+$').map(enc('hostile')),
);
const LIST_PARAMS = ['page', 'page_size', 'status', 'q', 'permit_type', 'project', 'created_from', 'created_to', 'planned_end_from', 'planned_end_to'];
const queryRoutes = [
  { label: 'list permits', path: '/permits/', params: LIST_PARAMS },
  { label: 'list notifications', path: '/notifications/', params: ['page', 'page_size', 'unread'] },
  { label: 'kpis', path: '/permits/kpis/', params: ['project'] },
  { label: 'throttle status', path: '/throttle-status/', params: ['user'] },
  { label: 'permit types', path: '/permit-types/', params: ['page'] },
];

describe('query strings', () => {
  it('when the list and read routes get hostile query values (NUL, broken UTF-8, page edges, long and odd dates), then no 5xx, SPEC §4 errors and pages out of range are 400 naming the field', async () => {
    const arb = fc.tuple(fc.constantFrom(...queryRoutes), fc.array(fc.tuple(fc.nat(), queryValue), { minLength: 1, maxLength: 3 }), fc.boolean());
    await property('query strings', arb, 110, 40_000, async ([route, params, repeat]) => {
      const pairs = params.map(([i, v]) => [route.params[i % route.params.length], v] as const);
      if (repeat) pairs.push([pairs[0][0], { cls: 'numbers', raw: '1' }]);
      const qs = pairs.map(([k, v]) => `${k}=${v.raw}`).join('&');
      const ans = await send(
        { method: 'GET', path: `${route.path}?${qs}`, label: route.label },
        pairs.map(([, v]) => v.cls),
      );
      // Pages: SPEC §4 — from 1, page at most int32, page_size at most 100.
      const seen = new Set(pairs.map(([k]) => k));
      const pageOnly = pairs.every(([k]) => k === 'page' || k === 'page_size') && route.params.includes('page_size') && seen.size === pairs.length;
      if (pageOnly) {
        const bad = pairs.some(([k, v]) => v.cls === 'numbers' && (PAGE_INVALID.includes(decodeURIComponent(v.raw)) || (k === 'page_size' && ['101', '2147483647'].includes(v.raw))));
        const good = pairs.every(([k, v]) => v.cls === 'numbers' && PAGE_VALID.includes(v.raw) && !(k === 'page_size' && v.raw === '2147483647'));
        if (bad) expect({ qs, status: ans.status, field: ['page', 'page_size'].includes(fieldOf(ans)) }).toEqual({ qs, status: 400, field: true });
        if (good) expect({ qs, status: ans.status }).toEqual({ qs, status: 200 });
      }
      if (repeat && route.params.length > 0 && route.path !== '/permit-types/') expect({ qs, status: ans.status }).toEqual({ qs, status: 400 });
    });
  });

  it('when page and page_size are at or past their int32 / range edges, then 200 inside the range and 400 naming the field outside it', async () => {
    const pageValue = fc.constantFrom(...PAGE_VALID, ...PAGE_INVALID, '101');
    const arb = fc.tuple(fc.constantFrom('/permits/', '/notifications/'), fc.option(pageValue, { nil: undefined }), fc.option(pageValue, { nil: undefined }));
    await property('pages', arb, 40, 20_000, async ([path, page, size]) => {
      const qs = [page === undefined ? '' : `page=${page}`, size === undefined ? '' : `page_size=${size}`].filter(Boolean).join('&');
      const ans = await send({ method: 'GET', path: `${path}?${qs}`, label: `pages ${path}` }, ['numbers']);
      const pageOk = page === undefined || PAGE_VALID.includes(page);
      const sizeOk = size === undefined || (PAGE_VALID.includes(size) && Number(size) <= 100);
      if (pageOk && sizeOk) expect({ qs, status: ans.status }).toEqual({ qs, status: 200 });
      else expect({ qs, status: ans.status, field: fieldOf(ans) }).toEqual({ qs, status: 400, field: pageOk ? 'page_size' : 'page' });
    });
  });

  it('when a bulk export selects by hostile filters, then no 5xx and SPEC §4 errors', async () => {
    const arb = fc.tuple(fc.constantFrom('pdf', 'excel'), fc.array(fc.tuple(fc.nat(), queryValue), { minLength: 1, maxLength: 2 }));
    await property('export filters', arb, 14, 30_000, async ([kind, params]) => {
      const pairs = params.map(([i, v]) => [LIST_PARAMS.slice(2)[i % (LIST_PARAMS.length - 2)], v] as const);
      // The filters always select the one export permit at most (its title), so an export stays small.
      const qs = [...pairs.map(([k, v]) => `${k}=${v.raw}`), 'q=Export%20only'].join('&');
      await send(
        { method: 'POST', path: `/permits/bulk_export_${kind}/?${qs}`, body: serialize({ use_filters: true }), label: `export ${kind} filters` },
        pairs.map(([, v]) => v.cls),
      );
    });
  });
});

// ---------------------------------------------------------------------------------------------
// Hostile ids in paths

describe('ids in paths', () => {
  it("when an id in a path is hostile (NUL, broken UTF-8, dotted, $, long, another project's), then 4xx with SPEC §4 errors and nothing changes", async () => {
    const idArb = fc.oneof(
      fc.constantFrom(
        '%00',
        'abc%00',
        '%ED%A0%80',
        '%ED%BF%BF',
        'a.b',
        '%24gt',
        '%7B%22%24gt%22%3A1%7D',
        '0'.repeat(24),
        'f'.repeat(24),
        'null',
        'undefined',
        '-0',
        '2147483648',
        '1e400',
        '%E6%BC%A2'.repeat(70),
      ),
      fc.integer({ min: 64, max: 4000 }).map((n) => 'a'.repeat(n)),
      fc.constant('FOREIGN'),
    );
    const routes = [
      ['GET', (id: string) => `/permits/${id}/`, () => undefined],
      ['PATCH', (id: string) => `/permits/${id}/`, () => ({ version: 1, title: 'x' })],
      ['POST', (id: string) => `/permits/${id}/transition/`, () => ({ status: 'cancelled', comments: '' })],
      ['GET', (id: string) => `/permits/${id}/isolation/`, () => undefined],
      ['POST', (id: string) => `/permits/${id}/assign_isolation/`, () => ({ name: 'B', energy_type: 'electrical' })],
      ['POST', (id: string) => `/permits/${id}/update_isolation/`, (id: string) => ({ point_id: id, action: 'isolate' })],
      ['GET', (id: string) => `/permits/${id}/closeout/`, () => undefined],
      ['POST', (id: string) => `/permits/${id}/update_closeout/`, () => ({ checklist: { area_cleaned: { done: true } } })],
      ['POST', (id: string) => `/permits/${id}/complete_closeout/`, () => ({})],
      ['POST', (id: string) => `/notifications/${id}/read/`, () => ({})],
      ['POST', (id: string) => `/jobs/${id}/run/`, () => ({})],
    ] as const;
    await property('path ids', fc.tuple(fc.constantFrom(...routes), idArb), 45, 30_000, async ([[method, path, body], rawId]) => {
      const id = rawId === 'FOREIGN' ? w.foreignPermit : rawId;
      const b = (body as (id: string) => unknown)(id);
      const ans = await send({ method, path: path(id), body: b === undefined ? undefined : serialize(b as Json), label: `${method} ${path(':id')}` }, [
        rawId === 'FOREIGN' ? 'foreign' : 'path-id',
      ]);
      expect({ path: path(id).slice(0, 80), status: ans.status >= 400 && ans.status < 500 }).toEqual({ path: path(id).slice(0, 80), status: true });
    });
  });
});

// ---------------------------------------------------------------------------------------------
// Offline sync: changes of every entity/op, mutated; every change accounted for, no trace of a refused one

type Change = { [k: string]: Json };
const DEVICE = 'fuzz-tab-1';

async function syncTemplates(): Promise<Record<string, () => Promise<Change>>> {
  return {
    'permit/create': async () => ({
      entity: 'permit',
      op: 'create',
      offline_id: '',
      data: { permit_type_id: 'hot-work', title: 'Offline weld', location: 'Bay 2', probability: 2, severity: 2, ppe_requirements: ['helmet'], safety_checklist: { gas_test: true } },
    }),
    'permit/update': async () => ({
      entity: 'permit',
      op: 'update',
      offline_id: '',
      server_id: w.sync.update,
      client_version: await versionOf(w.sync.update),
      data: { title: `Offline edit ${++seq}`, description: 'd', safety_checklist: { gas_test: true }, ppe_requirements: ['gloves'] },
    }),
    'permit/update_status': async () => {
      let st = await statusOf(w.sync.status);
      if (!['draft', 'submitted'].includes(st)) {
        w.sync.status = await newPermit();
        st = 'draft';
      }
      return {
        entity: 'permit',
        op: 'update_status',
        offline_id: '',
        server_id: w.sync.status,
        client_version: await versionOf(w.sync.status),
        data: { status: st === 'draft' ? 'submitted' : 'draft', comments: 'Offline' },
      };
    },
    'isolation_point/update': async () => {
      let p = await m.IsolationPoint.findById(w.sync.point).lean();
      if (!p || p.status === 'deisolated') {
        const permit = p ? String(p.permit_id) : w.isoPermit;
        const live = await livePoint(permit);
        w.sync.point = live.id;
        p = await m.IsolationPoint.findById(w.sync.point).lean();
      }
      return {
        entity: 'isolation_point',
        op: 'update',
        offline_id: '',
        server_id: w.sync.point,
        client_version: p!.version,
        data: { status: NEXT_STATUS[p!.status as string], lock_ids: ['L-5'], notes: 'Offline' },
      };
    },
    'closeout/update': async () => {
      let c = await m.Closeout.findOne({ permit_id: w.sync.closeout }).lean();
      if (!c || c.completed) {
        w.sync.closeout = await newPermit({}, 'active');
        await setup('GET', `/permits/${w.sync.closeout}/closeout/`);
        c = await m.Closeout.findOne({ permit_id: w.sync.closeout }).lean();
      }
      return {
        entity: 'closeout',
        op: 'update',
        offline_id: '',
        server_id: w.sync.closeout,
        client_version: c!.version,
        data: { checklist: { area_cleaned: { done: true, comments: `Swept ${++seq}` } }, remarks: 'r' },
      };
    },
  };
}

/** The state a change targets (its permit, point or closeout), hashed. */
async function targetState(c: Change): Promise<string> {
  const id = typeof c.server_id === 'string' ? c.server_id : '';
  if (!/^[0-9a-f]{24}$/.test(id)) return '';
  const doc =
    c.entity === 'isolation_point'
      ? await m.IsolationPoint.findById(id).lean()
      : c.entity === 'closeout'
        ? await m.Closeout.findOne({ permit_id: id }).lean()
        : await m.Permit.findById(id).lean();
  return JSON.stringify(doc);
}

describe('offline sync', () => {
  it('when a sync batch mixes valid and hostile changes of every entity/op, then 200 accounting for every change, and a rejected or conflicting one leaves no trace', async () => {
    const ops = ['permit/create', 'permit/update', 'permit/update_status', 'isolation_point/update', 'closeout/update'];
    const arb = fc.tuple(
      fc.array(fc.tuple(fc.constantFrom(...ops), fc.option(fc.array(mutationArb, { minLength: 1, maxLength: 2 }), { freq: 2 })), { minLength: 1, maxLength: 6 }),
      fc.option(mutationArb, { freq: 6 }),
    );
    await property('sync changes', arb, 60, 60_000, async ([spec, envelopeMutation]) => {
      const templates = await syncTemplates();
      // One change per target at most, so a refused change's target must be exactly as it was.
      const used = new Set<string>();
      const picked = spec.filter(([op]) => op === 'permit/create' || (!used.has(op) && used.add(op)));
      const changes: Change[] = [];
      const mutated: boolean[] = [];
      const classes: string[] = [];
      for (const [op, plan] of picked) {
        const c = await templates[op]();
        c.offline_id = `o-${process.pid}-${++seq}`;
        for (const mu of plan ?? []) {
          mutate(c, mu);
          classes.push(mu.cls);
        }
        changes.push(c);
        mutated.push(!!plan);
      }
      const envelope: Json = { device_id: DEVICE, client_time: new Date().toISOString(), changes };
      if (envelopeMutation) {
        mutate(envelope, envelopeMutation);
        classes.push(envelopeMutation.cls);
      }
      const before = await Promise.all(changes.map(targetState));
      const ans = await send({ method: 'POST', path: '/sync-offline-data/', body: serialize(envelope), label: 'sync' }, classes.length ? classes : ['valid']);
      if (ans.status !== 200) return;
      const r = ans.json;
      // An envelope mutation may have changed the device (a long id is still valid): permits are found by the one sent.
      const device = (envelope as { device_id: unknown }).device_id;
      const sentCount = Array.isArray((envelope as any).changes) ? (envelope as any).changes.length : 0;
      expect({ summary: r.summary, lists: [r.applied.length, r.conflicts.length, r.rejected.length] }).toEqual({
        summary: { total: sentCount, applied: r.applied.length, conflicts: r.conflicts.length, rejected: r.rejected.length },
        lists: [r.applied.length, r.conflicts.length, r.rejected.length],
      });
      expect(r.summary.applied + r.summary.conflicts + r.summary.rejected).toBe(sentCount);
      const outcome = new Map<string, string[]>();
      for (const [kind, list] of [
        ['applied', r.applied],
        ['conflict', r.conflicts],
        ['rejected', r.rejected],
      ] as const) {
        for (const x of list) outcome.set(x.offline_id, [...(outcome.get(x.offline_id) ?? []), kind]);
      }
      for (const [i, c] of changes.entries()) {
        if (typeof c.offline_id !== 'string' || !/^o-\d+-\d+$/.test(c.offline_id)) continue;
        const kinds = outcome.get(c.offline_id) ?? [];
        expect({ offline_id: c.offline_id, mutated: mutated[i], outcomes: kinds.length }).toEqual({ offline_id: c.offline_id, mutated: mutated[i], outcomes: 1 });
        if (kinds[0] === 'applied') continue;
        if (c.entity === 'permit' && c.op === 'create') {
          expect({ offline_id: c.offline_id, outcome: kinds[0], permits: await m.Permit.countDocuments({ sync_origin: `${String(device)}/${c.offline_id}` }) }).toEqual({
            offline_id: c.offline_id,
            outcome: kinds[0],
            permits: 0,
          });
        } else {
          expect({ offline_id: c.offline_id, outcome: kinds[0], targetUnchanged: (await targetState(c)) === before[i] }).toEqual({
            offline_id: c.offline_id,
            outcome: kinds[0],
            targetUnchanged: true,
          });
        }
      }
      // An unmutated create of a batch is applied (SPEC §5: a bad change is rejected alone).
      for (const [i, c] of changes.entries()) {
        if (!mutated[i] && c.op === 'create' && !envelopeMutation)
          expect({ offline_id: c.offline_id, outcome: outcome.get(c.offline_id as string) }).toEqual({ offline_id: c.offline_id, outcome: ['applied'] });
      }
    });
  });
});

// ---------------------------------------------------------------------------------------------
// Oversized answers: stale edits of permits and closeouts at their maximum sizes

const FULL_KEYS = ['title', 'description', 'location', 'control_measures', 'ppe_requirements', 'safety_checklist'] as const;

describe('oversized answers', () => {
  it('when a stale PATCH names any fields of a permit at its maximum sizes (CJK), then 409 at once with capped details', async () => {
    const arb = fc.tuple(fc.subarray([...FULL_KEYS], { minLength: 1 }), fc.constantFrom('字', 'ア'));
    await property('stale PATCH at max sizes', arb, 15, 30_000, async ([keys, ch]) => {
      const all = fullFields(ch) as Record<string, Json>;
      const body: Json = { version: 1, ...Object.fromEntries(keys.map((k) => [k, all[k]])) };
      const ans = await send({ method: 'PATCH', path: `/permits/${w.fullPermit}/`, body: serialize(body), label: 'stale PATCH (max sizes)' }, ['oversized']);
      expect({ keys, status: ans.status, version: ans.json?.error?.details?.server_state?.version }).toEqual({ keys, status: 409, version: await versionOf(w.fullPermit) });
    });
  });

  it('when a sync carries many stale edits of permits and closeouts at their maximum sizes, then 200 with every one a conflict (or 413 past 1 MiB, nothing applied)', async () => {
    const permitEdit = fc.record({ kind: fc.constant('permit' as const), keys: fc.subarray([...FULL_KEYS], { minLength: 1, maxLength: 3 }) });
    const closeoutEdit = fc.record({ kind: fc.constant('closeout' as const), keys: fc.subarray(['remarks', 'area_cleaned', 'fire_watch_done', 'photos'], { minLength: 1 }) });
    const arb = fc.tuple(fc.array(fc.oneof(permitEdit, closeoutEdit), { minLength: 1, maxLength: 8 }), fc.integer({ min: 1, max: 150 }), fc.boolean());
    await property('stale sync at max sizes', arb, 8, 60_000, async ([kinds, wanted, overflow]) => {
      const all = fullFields('字') as Record<string, Json>;
      const changes: Change[] = [];
      let size = 0;
      for (let i = 0; i < wanted; i++) {
        const e = kinds[i % kinds.length];
        const offline_id = `big-${process.pid}-${++seq}`;
        const items = e.keys.filter((f) => f !== 'remarks');
        const c: Change =
          e.kind === 'permit'
            ? { entity: 'permit', op: 'update', offline_id, server_id: w.fullPermit, client_version: 1, data: Object.fromEntries(e.keys.map((f) => [f, all[f]])) }
            : {
                entity: 'closeout',
                op: 'update',
                offline_id,
                server_id: w.fullCloseoutPermit,
                client_version: 1,
                data: { ...(e.keys.includes('remarks') ? { remarks: CJK(5000, '字') } : {}), checklist: Object.fromEntries(items.map((f) => [f, { comments: CJK(2000, '字') }])) },
              };
        size += Buffer.byteLength(serialize(c)) + 1;
        // Within the 1 MiB of a sync request, unless this run is about the limit itself.
        if (!overflow && size > 1024 * 1024 - 1024 && changes.length > 0) break;
        changes.push(c);
      }
      const k = changes.length;
      const body = serialize({ device_id: DEVICE, changes });
      const bytes = Buffer.byteLength(body);
      const permitBefore = await targetState({ entity: 'permit', server_id: w.fullPermit });
      const closeoutBefore = await targetState({ entity: 'closeout', server_id: w.fullCloseoutPermit });
      const ans = await send({ method: 'POST', path: '/sync-offline-data/', body, label: 'stale sync (max sizes)' }, ['oversized'], { bound: 10_000 });
      if (bytes > 1024 * 1024) {
        expect({ bytes, status: ans.status }).toEqual({ bytes, status: 413 });
        return;
      }
      expect({ bytes, k, status: ans.status, summary: ans.json?.summary }).toEqual({ bytes, k, status: 200, summary: { total: k, applied: 0, conflicts: k, rejected: 0 } });
      expect(await targetState({ entity: 'permit', server_id: w.fullPermit })).toBe(permitBefore);
      expect(await targetState({ entity: 'closeout', server_id: w.fullCloseoutPermit })).toBe(closeoutBefore);
    });
  });
});
