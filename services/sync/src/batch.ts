/**
 * One sync request: each change applied atomically and independently, idempotent on
 * (device_id, offline_id, entity) through a unique receipt claimed before applying, every outcome
 * persisted as a sync event.
 *
 * Permit creates go in bulk: their receipts are claimed with one unordered insert, each carrying
 * the id its permit will get (status `reserved`), then the permits are written by one bulk create.
 * A reserved receipt is final: the change is applied exactly when a permit with that id exists, so
 * nothing has to be written after the permit. Other changes are claimed in the same insert (or one
 * of their own when the batch has no creates), applied in order per permit (different permits concurrently), and their receipts
 * recorded together after the last of them; a change whose claim is refused (sent again, or by
 * another request at once) waits for or takes over the receipt that holds its key, one by one.
 */
import { createHash } from 'node:crypto';
import type { Logger, Principal } from '@ptw/common';
import { deleteEach, findEach, insertUnordered, recordTally, type Models } from '@ptw/db';
import * as d from '@ptw/domain';
import type { syncPb } from '@ptw/proto';
import { Types } from 'mongoose';
import { applyChange, createOutcome, isCreate, prepareCreate, unsupported } from './apply';
import type { Outcome } from './outcomes';

/** How long a replay waits for a concurrent copy of the same change to finish. */
const WAIT_MS = 10_000;
/**
 * A claim older than this was left by a process or store that died mid-change and may be taken
 * over (a change, or a batch's bulk create, holds its claim for well under a second).
 */
const STALE_CLAIM_MS = 20_000;
/** Permits whose changes are applied at the same time within one request. */
const CONCURRENT_PERMITS = 8;

const OFFLINE_ID = /^[A-Za-z0-9_.:-]{1,128}$/;

async function sleep(ms: number) {
  await new Promise((r) => setTimeout(r, ms));
}

interface Ctx {
  models: Models;
  who: Principal;
  deviceId: string;
  /** The key of this batch's creates (see batchKey). */
  batch?: string;
}

/**
 * A key of a batch's creates: the device and their offline ids. Its receipts and permits carry it, so
 * a device re-sending the batch after a lost answer is settled with one equality read of each
 * (per-item lookups are the fallback for creates first claimed by another batch).
 */
function batchKey(deviceId: string, creates: { c: syncPb.Change }[]): string | undefined {
  if (creates.length === 0) return undefined;
  const h = createHash('sha256').update(deviceId);
  for (const id of creates.map((e) => e.c.offline_id).sort()) h.update('\n').update(id);
  return h.digest('hex').slice(0, 32);
}

interface Receipt {
  _id: Types.ObjectId;
  device_id: string;
  offline_id: string;
  entity: string;
  status: 'pending' | 'reserved';
  server_id?: string;
  new_version?: number;
  user_id: string;
  batch?: string;
  at: Date;
}

interface StoredReceipt {
  _id: unknown;
  status: string;
  server_id?: string | null;
  new_version?: number | null;
  user_id?: string | null;
  batch?: string | null;
  at: Date;
}

const origin = (ctx: Ctx, c: syncPb.Change) => `${ctx.deviceId}/${c.offline_id}`;

/** A claim for `c`: a create reserves its permit's id (`serverId` when taking over an earlier claim). */
function claimFor(ctx: Ctx, c: syncPb.Change, serverId?: Types.ObjectId): Receipt {
  const base = { _id: new Types.ObjectId(), device_id: ctx.deviceId, offline_id: c.offline_id, entity: c.entity, user_id: ctx.who.user_id, at: new Date() };
  return isCreate(c)
    ? { ...base, status: 'reserved', server_id: String(serverId ?? new Types.ObjectId()), new_version: 1, ...(ctx.batch ? { batch: ctx.batch } : {}) }
    : { ...base, status: 'pending' };
}

const busy = (c: syncPb.Change, why: string): Outcome => ({
  kind: 'conflict',
  value: {
    entity: c.entity,
    offline_id: c.offline_id,
    server_id: c.server_id ?? '',
    reason: 'stale_version',
    client_version: c.client_version,
    server_version: 0,
    fields: { _retry: { client: null, server: why, merge_hint: 'manual' } },
    server_state: {},
    truncated: false,
  },
});

/**
 * What an existing receipt of the same change means: a final outcome, `busy` (another request is
 * applying it) or `stale` (its claimant died). `permitExists` tells whether a reserved create's permit was written.
 */
function settle(ctx: Ctx, c: syncPb.Change, r: StoredReceipt, permitExists: boolean): Outcome | 'busy' | 'stale' {
  if (r.user_id !== ctx.who.user_id) {
    return {
      kind: 'rejected',
      value: { entity: c.entity, offline_id: c.offline_id, server_id: c.server_id, reason: 'validation_error', detail: 'offline_id: already used by another user on this device' },
    };
  }
  if (r.status === 'applied' || (r.status === 'reserved' && permitExists)) {
    return { kind: 'applied', value: { entity: c.entity, offline_id: c.offline_id, server_id: r.server_id ?? '', new_version: r.new_version ?? 0, status: 'already_applied' } };
  }
  return Date.now() - new Date(r.at).getTime() > STALE_CLAIM_MS ? 'stale' : 'busy';
}

/**
 * Creates the permits of claimed creates with one bulk create and frees the receipts of those that
 * failed. On a store error the receipts stay: a retry finds the permits that were written and
 * takes the others over once their claims are stale, so nothing is created twice.
 */
async function applyCreates(ctx: Ctx, items: { c: syncPb.Change; receipt: Receipt }[]): Promise<Outcome[]> {
  const outcomes: Outcome[] = new Array<Outcome>(items.length);
  const bulk: { k: number; projectId?: string; item: d.BulkCreateItem }[] = [];
  items.forEach(({ c, receipt }, k) => {
    const prepared = prepareCreate(ctx.who, c);
    if ('outcome' in prepared) outcomes[k] = prepared.outcome;
    else bulk.push({ k, projectId: prepared.projectId, item: { id: new Types.ObjectId(receipt.server_id), data: prepared.data, syncOrigin: origin(ctx, c), syncBatch: receipt.batch } });
  });
  let results: d.BulkCreateResult[];
  try {
    results = await d.createPermits(
      ctx.models,
      ctx.who,
      bulk.map((b) => b.item),
    );
  } catch {
    for (const b of bulk) outcomes[b.k] = busy(items[b.k].c, 'temporary server error; retry');
    await free(
      ctx,
      items.filter((_, k) => outcomes[k].kind !== 'conflict').map((i) => i.receipt._id),
    );
    return outcomes;
  }
  bulk.forEach((b, n) => (outcomes[b.k] = createOutcome(items[b.k].c, results[n], b.projectId)));
  // Nothing was written for a refused create: free its offline id so the corrected change can be sent again.
  await free(
    ctx,
    items.filter((_, k) => outcomes[k].kind !== 'applied').map((i) => i.receipt._id),
  );
  return outcomes;
}

async function free(ctx: Ctx, ids: Types.ObjectId[]) {
  await deleteEach(ctx.models.SyncReceipt, ids);
}

/** What a claimed change's receipt becomes once it was tried: applied with its result, or freed. */
type ReceiptRecord = { id: Types.ObjectId; applied?: { server_id: string; new_version: number } };

/**
 * Applies a claimed change that is not a create and records its receipt: at once, or into `later`
 * (the batch's edits, see claimEdits) for one write after the batch's chains.
 */
async function applyClaimed(ctx: Ctx, c: syncPb.Change, receipt: Receipt, later?: ReceiptRecord[]): Promise<Outcome> {
  let outcome: Outcome;
  try {
    outcome = await applyChange(ctx.models, ctx.who, c);
  } catch (err) {
    await free(ctx, [receipt._id]);
    throw err;
  }
  const record: ReceiptRecord = { id: receipt._id, ...(outcome.kind === 'applied' ? { applied: { server_id: outcome.value.server_id, new_version: outcome.value.new_version } } : {}) };
  if (later) later.push(record);
  else await recordReceipts(ctx, [record]);
  return outcome;
}

/**
 * Writes tried changes' receipts: the applied ones in one update command (one statement each, by
 * `_id`: FerretDB's SQLite backend pushes down only `_id` filters), the others freed so the corrected
 * change can be sent again.
 */
async function recordReceipts(ctx: Ctx, records: ReceiptRecord[]): Promise<void> {
  const applied = records.filter((r) => r.applied);
  if (applied.length) {
    await ctx.models.SyncReceipt.bulkWrite(
      applied.map((r) => ({ updateOne: { filter: { _id: r.id }, update: { $set: { status: 'applied', ...r.applied } } } })),
      { ordered: false },
    );
  }
  await free(
    ctx,
    records.filter((r) => !r.applied).map((r) => r.id),
  );
}

/** The claims of a batch's first changes that are not creates, and once sent, what became of each (by change index). */
interface EditClaims {
  of: { i: number; c: syncPb.Change }[];
  claims: Receipt[];
  claimed?: Map<number, Receipt | 'refused'>;
}

/** What became of the edits' claims, from the refused positions of the insert that sent them (from `offset` on). */
function recordClaims(edits: EditClaims, refused: Set<number>, offset = 0): Map<number, Receipt | 'refused'> {
  return (edits.claimed = new Map(edits.of.map((e, k) => [e.i, refused.has(offset + k) ? 'refused' : edits.claims[k]])));
}

/**
 * Claims the batch's first changes that are not creates with one unordered insert (instead of one
 * each), the one of the batch's creates when it has any (bulkCreates): the claimed ones are applied
 * in their chains with their receipts recorded together after the chains; a refused one (a re-sent
 * or concurrent copy holds its key) goes through once().
 */
async function claimEdits(ctx: Ctx, edits: EditClaims): Promise<Map<number, Receipt | 'refused'>> {
  if (edits.claimed) return edits.claimed;
  const refused = edits.claims.length ? await insertUnordered(ctx.models.SyncReceipt, edits.claims, { lean: true }) : new Set<number>();
  return recordClaims(edits, refused);
}

/**
 * Applies one change at most once per (device, offline id, entity), waiting for or taking over an
 * earlier claim. `refused`: the batch's own claim of it was just refused (see claimEdits), so the
 * first step is reading the receipt that holds the key.
 */
async function once(ctx: Ctx, c: syncPb.Change, refused = false): Promise<Outcome> {
  const key = { device_id: ctx.deviceId, offline_id: c.offline_id, entity: c.entity };
  const started = Date.now();
  let serverId: Types.ObjectId | undefined;
  let claim = !refused;
  while (Date.now() - started < WAIT_MS) {
    const receipt = claimFor(ctx, c, serverId);
    if (claim && (await insertUnordered(ctx.models.SyncReceipt, [receipt], { lean: true })).size === 0) {
      return isCreate(c) ? (await applyCreates(ctx, [{ c, receipt }]))[0] : applyClaimed(ctx, c, receipt);
    }
    claim = true;
    const r = (await ctx.models.SyncReceipt.findOne(key).lean()) as StoredReceipt | null;
    if (!r) continue;
    const exists = r.status === 'reserved' && r.user_id === ctx.who.user_id && !!(await ctx.models.Permit.exists({ _id: r.server_id }));
    const s = settle(ctx, c, r, exists);
    if (typeof s === 'object') return s;
    if (s === 'busy') {
      await sleep(25);
      continue;
    }
    await ctx.models.SyncReceipt.deleteOne({ _id: r._id, status: r.status });
    if (isCreate(c)) {
      // Keep the permit id of the dead claim, so a permit it wrote counts as this create (receipts
      // from before ids were reserved are matched on the permit's sync origin instead).
      const earlier = r.status === 'reserved' ? { _id: r.server_id } : await ctx.models.Permit.findOne({ sync_origin: origin(ctx, c) }, { _id: 1 }).lean();
      serverId = earlier?._id ? new Types.ObjectId(String(earlier._id)) : undefined;
    }
  }
  return busy(c, 'the same change is being applied by another request; retry');
}

/** One reply for a batch's receipts or permits (a batch has at most 500 changes; the driver's first batch is otherwise 101). */
const BATCH_READ = 1001;

type Found = StoredReceipt & { offline_id: string; device_id: string; entity: string };

/**
 * The receipts of creates whose claims were refused, and which of their reserved permits exist: the
 * batch's own with one equality read each (a re-sent batch), the rest one natural-key lookup each (a
 * `$in` would read every receipt of the device, and every permit).
 */
async function settledReceipts(ctx: Ctx, toCheck: { c: syncPb.Change }[]): Promise<{ byId: Map<string, Found>; written: Set<string> }> {
  const wanted = new Set(toCheck.map((e) => e.c.offline_id));
  const byId = new Map<string, Found>();
  const mine = (r: Found) => r.device_id === ctx.deviceId && r.entity === 'permit' && wanted.has(r.offline_id);
  if (ctx.batch) for (const r of (await ctx.models.SyncReceipt.find({ batch: ctx.batch }).batchSize(BATCH_READ).lean()) as Found[]) if (mine(r)) byId.set(r.offline_id, r);
  const rest = [...wanted].filter((id) => !byId.has(id));
  for (const r of await findEach<Found>(ctx.models.SyncReceipt, 'offline_id', rest, { filter: { device_id: ctx.deviceId, entity: 'permit' } })) byId.set(r.offline_id, r);
  const reserved = [...byId.values()].filter((r) => r.status === 'reserved' && r.user_id === ctx.who.user_id);
  const written = new Set<string>();
  const ofBatch = reserved.filter((r) => ctx.batch && r.batch === ctx.batch);
  if (ofBatch.length) for (const p of await ctx.models.Permit.find({ sync_batch: ctx.batch }, { _id: 1 }).batchSize(BATCH_READ).lean()) written.add(String(p._id));
  // Receipts of other batches, and any of this batch whose permit was written under another key (a claim taken over).
  const others = reserved.filter((r) => !written.has(String(r.server_id))).map((r) => r.server_id);
  for (const p of await findEach<{ _id: unknown }>(ctx.models.Permit, '_id', others, { projection: { _id: 1 } })) written.add(String(p._id));
  return { byId, written };
}

/**
 * Applies a batch's permit creates (first occurrences of their offline ids) in bulk: claims all
 * with one unordered insert and creates the claimed ones with one bulk create; the refused ones
 * are settled from their receipts with one read (and one of the permits of reserved receipts).
 * Those another request is still applying are read again after a growing pause; freed or stale
 * ones are claimed again, as one set.
 */
async function bulkCreates(ctx: Ctx, creates: { i: number; c: syncPb.Change }[], outcomes: Outcome[], edits?: EditClaims): Promise<void> {
  const started = Date.now();
  const serverIds = new Map<number, Types.ObjectId>();
  let toClaim = creates;
  let toCheck: { i: number; c: syncPb.Change }[] = [];
  for (let pause = 25; toClaim.length || toCheck.length; pause = Math.min(pause * 2, 250)) {
    if (toClaim.length) {
      const claims = toClaim.map((e) => claimFor(ctx, e.c, serverIds.get(e.i)));
      // The first claim command carries the batch's edits' claims too (see claimEdits).
      const extra = edits && !edits.claimed ? edits.claims : [];
      const refusedAll = await insertUnordered(ctx.models.SyncReceipt, [...claims, ...extra], { lean: true });
      if (edits && extra.length) recordClaims(edits, refusedAll, claims.length);
      const refused = new Set([...refusedAll].filter((k) => k < claims.length));
      const claimed = toClaim.map((e, k) => ({ ...e, receipt: claims[k] })).filter((_, k) => !refused.has(k));
      const results = await applyCreates(ctx, claimed);
      claimed.forEach((e, n) => (outcomes[e.i] = results[n]));
      toCheck = [...toCheck, ...toClaim.filter((_, k) => refused.has(k))];
      toClaim = [];
    }
    if (toCheck.length === 0) break;

    // One batch larger than the list: a cursor whose first batch is exactly full stays open and
    // costs an empty getMore on FerretDB (the default batch of 101 would cost several).
    const { byId, written } = await settledReceipts(ctx, toCheck);
    const stale: StoredReceipt[] = [];
    const waiting: { i: number; c: syncPb.Change }[] = [];
    for (const e of toCheck) {
      const r = byId.get(e.c.offline_id);
      const s = r ? settle(ctx, e.c, r, written.has(String(r.server_id))) : 'free';
      if (typeof s === 'object') outcomes[e.i] = s;
      else if (s === 'busy') waiting.push(e);
      else toClaim.push(e);
      if (s === 'stale' && r) {
        stale.push(r);
        // Keep the permit id of the dead claim, so a permit it wrote counts as this create (receipts
        // from before ids were reserved are matched on the permit's sync origin instead).
        const earlier = r.status === 'reserved' ? { _id: r.server_id } : await ctx.models.Permit.findOne({ sync_origin: origin(ctx, e.c) }, { _id: 1 }).lean();
        if (earlier?._id) serverIds.set(e.i, new Types.ObjectId(String(earlier._id)));
      }
    }
    await deleteEach(
      ctx.models.SyncReceipt,
      stale.map((r) => r._id),
      { status: { $ne: 'applied' } },
    );
    toCheck = waiting;
    if (toClaim.length === 0 && toCheck.length) {
      if (Date.now() - started >= WAIT_MS) break;
      await sleep(pause);
    }
  }
  for (const e of toCheck) outcomes[e.i] = busy(e.c, 'the same change is being applied by another request; retry');
}

/** Runs each chain's changes in order, up to CONCURRENT_PERMITS chains at a time. */
async function runChains(chains: (() => Promise<void>)[][]) {
  const queue = [...chains];
  await Promise.all(
    Array.from({ length: Math.min(CONCURRENT_PERMITS, queue.length) }, async () => {
      for (let chain = queue.shift(); chain; chain = queue.shift()) for (const step of chain) await step();
    }),
  );
}

/** The permit a change acts on (an isolation point's permit is read from `points`), which orders it after earlier changes to the same permit. */
function chainKey(c: syncPb.Change, points: Map<string, string>): string {
  if (c.entity === 'isolation_point') {
    const permit = points.get(c.server_id ?? '');
    return permit ? `permit:${permit}` : `point:${c.server_id}`;
  }
  return `permit:${c.server_id}`;
}

/**
 * Bytes of conflict values (fields' client and server values, server states) one answer may carry:
 * 500 stale edits of a permit whose texts are at their maximum would otherwise exceed the hop's
 * message limit. Past it, a conflict keeps its reason, versions and fields' merge hints, and says
 * `truncated`; the device reads the permit to merge.
 */
export const CONFLICT_VALUES_BUDGET = 2 * 1024 * 1024;

function capConflicts(conflicts: syncPb.Conflict[]): syncPb.Conflict[] {
  let used = 0;
  return conflicts.map((c) => {
    const size = Buffer.byteLength(JSON.stringify(c.fields ?? {}), 'utf8') + Buffer.byteLength(JSON.stringify(c.server_state ?? {}), 'utf8');
    if (used + size <= CONFLICT_VALUES_BUDGET) {
      used += size;
      return c;
    }
    const hints = Object.fromEntries(Object.entries((c.fields ?? {}) as Record<string, { merge_hint?: unknown }>).map(([k, v]) => [k, { merge_hint: v?.merge_hint ?? 'manual' }]));
    return { ...c, fields: hints, server_state: {}, truncated: true };
  });
}

export interface BatchResult {
  response: syncPb.SyncOfflineDataResponse;
  outcomes: Outcome[];
}

/**
 * Applies a batch and records every outcome. A change that depends on an earlier one of the same
 * batch acts on the same permit (or repeats its offline id) and is applied after it; creates depend
 * on nothing else in a batch. `log` gives the call's logger when a line must be written (it is made
 * on first use: most batches write none).
 */
export async function syncBatch(models: Models, who: Principal, req: syncPb.SyncOfflineDataRequest, log?: () => Logger): Promise<BatchResult> {
  const ctx: Ctx = { models, who, deviceId: req.device_id };
  const outcomes: Outcome[] = new Array<Outcome>(req.changes.length);
  const firsts: { i: number; c: syncPb.Change }[] = [];
  const repeats: { i: number; c: syncPb.Change }[] = [];
  const seen = new Set<string>();
  req.changes.forEach((c, i) => {
    if (!OFFLINE_ID.test(c.offline_id ?? '')) {
      outcomes[i] = {
        kind: 'rejected',
        value: { entity: c.entity, offline_id: c.offline_id, server_id: c.server_id, reason: 'validation_error', detail: 'offline_id: expected 1-128 letters, digits or _.:-' },
      };
      return;
    }
    const refused = unsupported(c);
    if (refused) {
      outcomes[i] = refused;
      return;
    }
    const key = `${c.entity}/${c.offline_id}`;
    (seen.has(key) ? repeats : firsts).push({ i, c });
    seen.add(key);
  });

  const creates = firsts.filter((e) => isCreate(e.c));
  ctx.batch = batchKey(req.device_id, creates);
  const others = firsts.filter((e) => !isCreate(e.c));
  const edits: EditClaims = { of: others, claims: others.map((e) => claimFor(ctx, e.c)) };
  try {
    await bulkCreates(ctx, creates, outcomes, edits);
  } catch {
    for (const e of creates) outcomes[e.i] ??= busy(e.c, 'temporary server error; retry');
  }

  const pointIds = others.filter((e) => e.c.entity === 'isolation_point' && /^[0-9a-f]{24}$/i.test(e.c.server_id ?? '')).map((e) => e.c.server_id as string);
  const points = new Map<string, string>();
  if (pointIds.length) {
    try {
      for (const p of await findEach<{ _id: unknown; permit_id: string }>(models.IsolationPoint, '_id', pointIds, { projection: { permit_id: 1 } })) points.set(String(p._id), p.permit_id);
    } catch {
      // Without the points' permits, each point's changes still run in order, only not behind its permit's.
    }
  }
  // One claim command for all of them; after a store error each claims itself (once()), as repeats do.
  const claimed = await claimEdits(ctx, edits).catch(() => new Map<number, Receipt | 'refused'>());
  const later: ReceiptRecord[] = [];
  // An unexpected store error on one change must not lose the others' outcomes: report it as a
  // conflict the device retries (nothing was applied for it).
  const tried = async (e: { i: number; c: syncPb.Change }) => {
    const claim = claimed.get(e.i);
    try {
      outcomes[e.i] = claim && claim !== 'refused' ? await applyClaimed(ctx, e.c, claim, later) : await once(ctx, e.c, claim === 'refused');
    } catch {
      outcomes[e.i] = busy(e.c, 'temporary server error; retry');
    }
  };
  const chains = new Map<string, (() => Promise<void>)[]>();
  for (const e of others) {
    const k = chainKey(e.c, points);
    const chain = chains.get(k) ?? [];
    chain.push(() => tried(e));
    chains.set(k, chain);
  }
  await runChains([...chains.values()]);
  // Before the repeats, which wait on these receipts. The answer stands if this write fails: the
  // changes were applied; a copy sent again waits for the receipts' claims to go stale, then finds
  // each change applied already by its version (as after a crash here).
  await recordReceipts(ctx, later).catch((err: unknown) => log?.().warn({ event: 'sync_receipts_unrecorded', err, applied_count: later.length }, 'sync receipts not recorded'));
  // A repeated offline id waits for everything before it (its first occurrence included).
  for (const e of repeats) await tried(e);

  const at = new Date();
  if (outcomes.length) {
    // The changes are applied (or not) already; losing their health events must not hide that
    // from the device, so a failed event write is logged and the answer still goes out.
    await models.SyncEvent.insertMany(
      outcomes.map((o) => ({
        device_id: req.device_id,
        user_id: who.user_id,
        ...(o.projectId ? { project_id: o.projectId } : {}),
        entity: o.value.entity,
        outcome: o.kind === 'applied' ? 'applied' : o.kind === 'conflict' ? 'conflict' : 'rejected',
        reason: o.kind === 'applied' ? o.value.status : (o.value as { reason: string }).reason,
        at,
      })),
      { lean: true },
    ).catch((err: unknown) => log?.().warn({ event: 'sync_events_lost', err, applied_count: outcomes.length }, 'sync events not recorded'));
  }
  if (outcomes.length) {
    // The window counts of health (see @ptw/db tallies.ts): one small document per batch.
    const tally: Record<string, number> = {};
    for (const o of outcomes) {
      const k = o.kind === 'applied' ? (o.value.status === 'already_applied' ? 'already_applied' : 'applied') : o.kind === 'conflict' ? 'conflicts' : 'rejected';
      tally[k] = (tally[k] ?? 0) + 1;
    }
    await recordTally(models, 'sync', tally, at).catch((err: unknown) => log?.().warn({ event: 'sync_tally_lost', err, applied_count: outcomes.length }, 'sync tally not recorded'));
  }
  const pick = <K extends Outcome['kind']>(k: K) => outcomes.filter((o) => o.kind === k).map((o) => o.value);
  const appliedList = pick('applied') as syncPb.Applied[];
  const conflicts = capConflicts(pick('conflict') as syncPb.Conflict[]);
  const rejected = pick('rejected') as syncPb.Rejected[];
  return {
    outcomes,
    response: {
      applied: appliedList,
      conflicts,
      rejected,
      summary: { total: outcomes.length, applied: appliedList.length, conflicts: conflicts.length, rejected: rejected.length },
    },
  };
}
