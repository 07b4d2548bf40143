/**
 * The pushdown guard (issue 22): what a store does with the queries an operation sends, asked of the
 * store itself with `explain`.
 *
 * FerretDB 1.24 hands its backend only top-level equality (`{f: v}`, `{f: {$eq: v}}`, `$ne`) on
 * scalars; a `$in`, a range, a `$or`, a sort or a skip is done in FerretDB's own process after it has
 * decoded every document the pushed-down part matched (some 250 µs per permit). So a query is
 * bounded only when its pushed-down equalities alone bound what it can match: a unique key, a
 * permit's children (`permit_id`), a bucket. {@link checkBounded} says so per query from a rule
 * table the caller gives (which fields, together, bound a collection) and from `explain`'s
 * `filterPushdown`; on MongoDB it reads the winning plan instead (no COLLSCAN).
 */
import type { Connection } from 'mongoose';
import { storeMonitoringWanted } from './command-counter';

/** One query an operation sent: the collection, the command and the filter the store evaluates. */
export interface SentQuery {
  command: 'find' | 'count' | 'update' | 'delete' | 'findAndModify' | 'aggregate' | 'distinct';
  collection: string;
  filter: Record<string, unknown>;
}

type Sink = (q: SentQuery, appName: string) => void;
const sinks = new Set<Sink>();

/** The filters a command evaluates (an update or delete command carries one per statement). */
export function queriesOf(commandName: string, body: Record<string, unknown>): SentQuery[] {
  const collection = body[commandName];
  if (typeof collection !== 'string') return [];
  const f = (x: unknown) => (x && typeof x === 'object' ? (x as Record<string, unknown>) : {});
  switch (commandName) {
    case 'find':
    case 'count':
    case 'distinct':
      return [{ command: commandName, collection, filter: f(body.filter ?? body.query) }];
    case 'findAndModify':
      return [{ command: commandName, collection, filter: f(body.query) }];
    case 'update':
      return ((body.updates as { q?: unknown }[]) ?? []).map((u) => ({ command: 'update', collection, filter: f(u.q) }));
    case 'delete':
      return ((body.deletes as { q?: unknown }[]) ?? []).map((d) => ({ command: 'delete', collection, filter: f(d.q) }));
    case 'aggregate': {
      const first = ((body.pipeline as Record<string, unknown>[]) ?? [])[0];
      return [{ command: 'aggregate', collection, filter: first && '$match' in first ? f(first.$match) : {} }];
    }
    default:
      return [];
  }
}

/**
 * Forwards the queries of a connection opened with `monitorCommands: true` to {@link captureQueries}
 * (see connectMongo: only while a counter or a capture listens).
 */
export function forwardQueries(conn: Connection, appName: string): void {
  conn.getClient().on('commandStarted', (e) => {
    if (sinks.size === 0) return;
    for (const q of queriesOf(e.commandName, e.command)) for (const s of sinks) s(q, appName);
  });
}

/** Whether a capture is listening (connections opened now turn monitoring on). */
export function queryCaptureWanted(): boolean {
  return sinks.size > 0 || storeMonitoringWanted();
}

/** Collects every query the monitored connections send while `measure` runs. */
export interface QueryCapture {
  measure<T>(fn: () => Promise<T>): Promise<{ result: T; queries: SentQuery[] }>;
  close(): void;
}

/** Starts capturing (the connections opened with `appName`, or all); create it before they are opened. */
export function captureQueries(appName?: string): QueryCapture {
  let seen: SentQuery[] | undefined;
  const sink: Sink = (q, app) => {
    if (appName === undefined || app === appName) seen?.push(q);
  };
  sinks.add(sink);
  return {
    async measure(fn) {
      seen = [];
      try {
        const result = await fn();
        return { result, queries: seen };
      } finally {
        seen = undefined;
      }
    },
    close: () => {
      sinks.delete(sink);
    },
  };
}

/**
 * Which equality fields bound a collection: any one of the sets, all of its fields compared with
 * plain equality, bounds a query (`['_id']`, `['permit_id']`, `['device_id', 'offline_id', 'entity']`).
 */
export type BoundingKeys = Record<string, string[][]>;

/** A query let through although its equalities do not bound it, with the bound that holds instead. */
export interface AllowedQuery {
  collection: string;
  /** The top-level fields of the filter, exactly (sorted or not). */
  fields: string[];
  /** Those of `fields` that may be other than plain equality (ranges, `$or`); every other one must be an equality. */
  ranged?: string[];
  /** What bounds it, in words (the test states it). */
  bound: string;
}

/** Top-level fields compared with plain equality on a scalar (what FerretDB pushes down). */
export function equalityFields(filter: Record<string, unknown>): string[] {
  const out: string[] = [];
  for (const [k, v] of Object.entries(filter)) {
    if (k.startsWith('$')) continue;
    const scalar = (x: unknown) =>
      x === null ||
      ['string', 'number', 'boolean'].includes(typeof x) ||
      x instanceof Date ||
      (typeof x === 'object' && x !== null && (x as { _bsontype?: string })._bsontype === 'ObjectId');
    if (scalar(v)) out.push(k);
    else if (v && typeof v === 'object' && Object.keys(v).length === 1 && '$eq' in v && scalar(v.$eq)) out.push(k);
  }
  return out;
}

export interface PushdownVerdict {
  query: SentQuery;
  /** What the store said: FerretDB's `filterPushdown`, or no COLLSCAN in MongoDB's winning plan. */
  pushedDown: boolean;
  /** The key set that bounds it, or the allow-list's stated bound. */
  boundBy?: string;
  ok: boolean;
}

/**
 * Explains `q` on `conn`'s database as the `find` with the same filter (FerretDB and MongoDB
 * explain a find's filter exactly as an update's, delete's or count's).
 */
export async function explainQuery(conn: Connection, q: SentQuery): Promise<{ pushedDown: boolean; raw: Record<string, unknown> }> {
  const db = conn.db;
  if (!db) throw new Error('explainQuery: the connection is not open');
  const raw = (await db.command({ explain: { find: q.collection, filter: q.filter }, verbosity: 'queryPlanner' })) as Record<string, unknown>;
  if (typeof raw.filterPushdown === 'boolean') {
    // An empty filter is a whole-collection read whatever the flag says.
    return { pushedDown: raw.filterPushdown && Object.keys(q.filter).length > 0, raw };
  }
  return { pushedDown: !JSON.stringify(raw.queryPlanner ?? {}).includes('COLLSCAN'), raw };
}

/**
 * Judges every query: it must be pushed down AND have a bounding key set among its plain
 * equalities, or be on the allow-list (same collection, same top-level fields).
 */
export async function checkBounded(conn: Connection, queries: SentQuery[], keys: BoundingKeys, allow: AllowedQuery[] = []): Promise<PushdownVerdict[]> {
  const out: PushdownVerdict[] = [];
  for (const query of queries) {
    const fields = Object.keys(query.filter).sort();
    const eq = new Set(equalityFields(query.filter));
    const allowed = allow.find(
      (a) => a.collection === query.collection && [...a.fields].sort().join(',') === fields.join(',') && a.fields.every((f) => f.startsWith('$') || a.ranged?.includes(f) || eq.has(f)),
    );
    const keySet = (keys[query.collection] ?? []).find((set) => set.every((f) => eq.has(f)));
    const { pushedDown } = await explainQuery(conn, query);
    const boundBy = keySet ? keySet.join('+') : allowed ? `allowed: ${allowed.bound}` : undefined;
    out.push({ query, pushedDown, boundBy, ok: allowed ? true : pushedDown && !!keySet });
  }
  return out;
}

/** A readable line per refused query, for a test's failure message. */
export function describeUnbounded(verdicts: PushdownVerdict[]): string[] {
  return verdicts
    .filter((v) => !v.ok)
    .map((v) => `${v.query.command} ${v.query.collection} ${JSON.stringify(v.query.filter)}: ${v.pushedDown ? 'pushed down but no bounding equality' : 'not pushed down'}`);
}

/**
 * The equalities that bound each collection (unique keys, a permit's children, buckets): what the
 * pushdown guard tests accept without an allow-list entry.
 */
export const BOUNDING_KEYS: BoundingKeys = {
  // A place in a project's registration order (unique) and a block of places (@ptw/domain registration.ts: 25 permits at most).
  permits: [['_id'], ['permit_number'], ['sync_origin'], ['sync_batch'], ['project_id', 'list_seq'], ['project_id', 'list_block']],
  revisions: [['entity', 'entity_id', 'version'], ['_id']],
  audit_events: [['permit_id']],
  workflow_steps: [['permit_id'], ['_id']],
  isolation_points: [['_id'], ['permit_id']],
  closeouts: [['permit_id'], ['_id']],
  notifications: [['_id'], ['user_id', 'dedupe_key']],
  sync_receipts: [['_id'], ['device_id', 'offline_id', 'entity'], ['batch']],
  tallies: [
    ['series', 'minute'],
    ['series', 'hour'],
  ],
  tally_rollups: [['_id'], ['series', 'level', 'parent']],
  // A block's readings: one per write since the last refresh of the block (older ones are deleted).
  block_tallies: [['_id'], ['project_id', 'block']],
  block_texts: [['_id'], ['project_id', 'block']],
  // A block's edit marks: one or two (@ptw/domain text-blocks.ts).
  block_marks: [['_id'], ['project_id', 'block']],
  counters: [['_id']],
  kpi_snapshots: [['_id']],
  job_states: [['_id']],
  job_runs: [['job', 'slot', 'attempt']],
  permit_types: [['_id']],
  projects: [['_id']],
  users: [['_id']],
};

/** Allow-list entries every guard shares: bounded by something other than a key, stated here. */
export const SHARED_ALLOWED: AllowedQuery[] = [{ collection: 'permit_types', fields: ['active'], bound: 'the active permit types: a handful per site, not growing with permits' }];
