/**
 * Which permit types a create may use: the active ones. Every create (a sync batch's bulk create,
 * POST /permits/) asks; the answer is remembered per process for ACTIVE_TYPE_TTL_MS, because under
 * a shift start's sync load these reads were one store command in nine, always for the same handful
 * of documents. Only types found active are remembered: a type added to the store is usable at once,
 * and a type deactivated in the store is refused by every process at most ACTIVE_TYPE_TTL_MS later
 * (permit types are managed in the store, not through the API; docs/behaviour.md).
 */
import { findEach, type Models } from '@ptw/db';

/** How long a type found active is taken as active without asking the store again. */
export const ACTIVE_TYPE_TTL_MS = 10_000;

const seen = new WeakMap<Models, Map<string, number>>();

/** The ids among `typeIds` of active permit types (one equality read per id not seen active lately). */
export async function activeTypeIds(models: Models, typeIds: string[], now = Date.now()): Promise<Set<string>> {
  let until = seen.get(models);
  if (!until) seen.set(models, (until = new Map<string, number>()));
  const active = new Set<string>();
  const ask: string[] = [];
  for (const id of new Set(typeIds)) {
    if ((until.get(id) ?? 0) > now) active.add(id);
    else ask.push(id);
  }
  if (ask.length === 0) return active;
  const found = await findEach<{ _id: unknown }>(models.PermitType, '_id', ask, { filter: { active: true }, projection: { _id: 1 } });
  for (const t of found) {
    const id = String(t._id);
    active.add(id);
    until.set(id, now + ACTIVE_TYPE_TTL_MS);
  }
  // Asked and not found active: forget any earlier answer (it expired anyway).
  for (const id of ask) if (!active.has(id)) until.delete(id);
  return active;
}
