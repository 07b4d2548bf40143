/**
 * One sync request: each change applied atomically and independently, idempotent on
 * (device_id, offline_id, entity) through a unique receipt claimed before applying, every outcome
 * persisted as a sync event.
 */
import type { Logger, Principal } from '@ptw/common';
import { isDuplicateKey, type Models } from '@ptw/db';
import type { syncPb } from '@ptw/proto';
import { applyChange } from './apply';
import type { Outcome } from './outcomes';

/** How long a replay waits for a concurrent copy of the same change to finish. */
const WAIT_MS = 10_000;
/**
 * A claim older than this was left by a process or store that died mid-change and may be taken
 * over (one change takes milliseconds; a whole batch holds each claim only while that change runs).
 */
const STALE_CLAIM_MS = 20_000;

const OFFLINE_ID = /^[A-Za-z0-9_.:\-]{1,128}$/;

async function sleep(ms: number) {
  await new Promise((r) => setTimeout(r, ms));
}

/** Applies one change at most once per (device, offline id, entity). */
async function once(models: Models, who: Principal, deviceId: string, c: syncPb.Change): Promise<Outcome> {
  if (!OFFLINE_ID.test(c.offline_id ?? '')) {
    return { kind: 'rejected', value: { entity: c.entity, offline_id: c.offline_id, server_id: c.server_id, reason: 'validation_error', detail: 'offline_id: expected 1-128 letters, digits or _.:-' } };
  }
  const key = { device_id: deviceId, offline_id: c.offline_id, entity: c.entity };
  const started = Date.now();
  const origin = `${deviceId}/${c.offline_id}`;
  let tookOver = false;
  while (Date.now() - started < WAIT_MS) {
    let receiptId: unknown;
    try {
      receiptId = (await models.SyncReceipt.create({ ...key, status: 'pending', user_id: who.user_id, at: new Date() }))._id;
    } catch (err) {
      if (!isDuplicateKey(err)) throw err;
      const r = await models.SyncReceipt.findOne(key).lean();
      if (!r) continue;
      if (r.user_id !== who.user_id) {
        return { kind: 'rejected', value: { entity: c.entity, offline_id: c.offline_id, server_id: c.server_id, reason: 'validation_error', detail: 'offline_id: already used by another user on this device' } };
      }
      if (r.status === 'applied') {
        return { kind: 'applied', value: { entity: c.entity, offline_id: c.offline_id, server_id: r.server_id ?? '', new_version: r.new_version ?? 0, status: 'already_applied' } };
      }
      if (Date.now() - new Date(r.at).getTime() > STALE_CLAIM_MS) {
        await models.SyncReceipt.deleteOne({ _id: r._id, status: 'pending' });
        tookOver = true;
      } else await sleep(25);
      continue;
    }
    let outcome: Outcome;
    try {
      // A dead claimant may have created the permit before it could record the receipt.
      const earlier = tookOver && c.entity === 'permit' && c.op === 'create' ? await models.Permit.findOne({ sync_origin: origin }, { version: 1, project_id: 1 }).lean() : null;
      outcome = earlier
        ? { kind: 'applied', projectId: earlier.project_id, value: { entity: c.entity, offline_id: c.offline_id, server_id: String(earlier._id), new_version: earlier.version, status: 'applied' } }
        : await applyChange(models, who, c, origin);
    } catch (err) {
      await models.SyncReceipt.deleteOne({ _id: receiptId });
      throw err;
    }
    // By _id: FerretDB's SQLite backend pushes down only _id filters.
    if (outcome.kind === 'applied') {
      await models.SyncReceipt.updateOne({ _id: receiptId }, { $set: { status: 'applied', server_id: outcome.value.server_id, new_version: outcome.value.new_version } });
    } else {
      // Nothing was written: free the offline id so the corrected change can be sent again.
      await models.SyncReceipt.deleteOne({ _id: receiptId });
    }
    return outcome;
  }
  return {
    kind: 'conflict',
    value: { entity: c.entity, offline_id: c.offline_id, server_id: c.server_id ?? '', reason: 'stale_version', client_version: c.client_version, server_version: 0, fields: { _retry: { client: null, server: 'the same change is being applied by another request; retry', merge_hint: 'manual' } }, server_state: {} },
  };
}

export interface BatchResult {
  response: syncPb.SyncOfflineDataResponse;
  outcomes: Outcome[];
}

/** Applies a batch in order (a later change may depend on an earlier one) and records every outcome. */
export async function syncBatch(models: Models, who: Principal, req: syncPb.SyncOfflineDataRequest, log?: Logger): Promise<BatchResult> {
  const outcomes: Outcome[] = [];
  for (const c of req.changes) {
    try {
      outcomes.push(await once(models, who, req.device_id, c));
    } catch {
      // An unexpected store error on one change must not lose the others' outcomes: report it as a
      // conflict the device retries (nothing was applied for it).
      outcomes.push({
        kind: 'conflict',
        value: { entity: c.entity, offline_id: c.offline_id, server_id: c.server_id ?? '', reason: 'stale_version', client_version: c.client_version, server_version: 0, fields: { _retry: { client: null, server: 'temporary server error; retry', merge_hint: 'manual' } }, server_state: {} },
      });
    }
  }
  const at = new Date();
  if (outcomes.length) {
    // The changes are applied (or not) already; losing their health events must not hide that
    // from the device, so a failed event write is logged and the answer still goes out.
    await models.SyncEvent.insertMany(
      outcomes.map((o) => ({
        device_id: req.device_id,
        user_id: who.user_id,
        project_id: o.projectId,
        entity: o.value.entity,
        outcome: o.kind === 'applied' ? 'applied' : o.kind === 'conflict' ? 'conflict' : 'rejected',
        reason: o.kind === 'applied' ? (o.value as syncPb.Applied).status : (o.value as { reason: string }).reason,
        at,
      })),
    ).catch((err: unknown) => log?.warn({ event: 'sync_events_lost', err, applied_count: outcomes.length }, 'sync events not recorded'));
  }
  const pick = <K extends Outcome['kind']>(k: K) => outcomes.filter((o) => o.kind === k).map((o) => o.value);
  const appliedList = pick('applied') as syncPb.Applied[];
  const conflicts = pick('conflict') as syncPb.Conflict[];
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
