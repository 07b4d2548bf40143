/** Version-guarded permit writes: every write claims the next version in the revisions unique index (see @ptw/db claimVersion). */
import { conflict } from '@ptw/common';
import { claimVersion, type Models } from '@ptw/db';
import { toPermitMessage } from '../serialize';
import type { PermitDoc } from './types';

/**
 * A 409 carrying the server's current state, for the client to merge: the fields the change named
 * (all of them when it named none) with the permit's id, version and status, so the answer stays
 * small whatever the permit holds.
 */
export async function staleVersion(models: Models, id: string, sentVersion: number | undefined, named?: string[]) {
  const current = await models.Permit.findById(id).lean();
  const state = current ? (toPermitMessage(current) as unknown as Record<string, unknown>) : undefined;
  const shown = state && named?.length ? Object.fromEntries(Object.entries(state).filter(([k]) => ['id', 'version', 'status', ...named].includes(k))) : state;
  return conflict(sentVersion === undefined ? 'Permit was changed concurrently, retry' : `Stale version ${sentVersion}: the permit is at version ${current?.version}`, {
    server_version: current?.version,
    server_state: shown,
  });
}

/**
 * Applies `set` to a permit read at `doc.version`: claims the next version (unique index), then
 * updates with `{_id, version}` as the filter. Returns the new document or throws a 409 with the
 * server state when another writer got there first.
 */
export async function guardedPermitWrite(models: Models, doc: PermitDoc, set: Record<string, unknown>, userId: string, now: Date, sentVersion?: number): Promise<PermitDoc> {
  const id = String(doc._id);
  if (!(await claimVersion(models, 'permit', id, doc.version, userId))) throw await staleVersion(models, id, sentVersion);
  const updated = (await models.Permit.findOneAndUpdate(
    { _id: id, version: doc.version },
    { $set: { ...set, version: doc.version + 1, updated_at: now } },
    { new: true },
  ).lean()) as PermitDoc | null;
  if (!updated) throw await staleVersion(models, id, sentVersion);
  return updated;
}
