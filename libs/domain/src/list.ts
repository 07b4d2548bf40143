/**
 * Permit list helpers shared by the list queries: their order, and the `created_day` backfill of
 * permits written by versions before it existed. The default list itself reads by registration
 * order (registration.ts).
 */
import { upsertRetried, utcDay, type Models } from '@ptw/db';

/** Permit lists' order: newest first, `_id` breaking ties. */
export const NEWEST_FIRST = { created_at: -1, _id: -1 } as const;

const BACKFILL_MARK = 'migration:permit_created_day';

/**
 * Gives `created_day` to permits written before it existed (a store of an older version), once:
 * a mark in `counters` makes later starts cost one read. Without it those permits would be missing
 * from the days they were created on.
 */
export async function backfillCreatedDay(models: Models, chunk = 100): Promise<number> {
  if (await models.Counter.exists({ _id: BACKFILL_MARK })) return 0;
  const missing = await models.Permit.find({ created_day: { $exists: false } }, { _id: 1, created_at: 1 }).lean();
  for (let i = 0; i < missing.length; i += chunk) {
    await models.Permit.bulkWrite(
      missing.slice(i, i + chunk).map((p) => ({ updateOne: { filter: { _id: p._id }, update: { $set: { created_day: utcDay(p.created_at) } } } })),
      { ordered: false },
    );
  }
  await upsertRetried(() => models.Counter.updateOne({ _id: BACKFILL_MARK }, { $set: { seq: missing.length } }, { upsert: true }));
  return missing.length;
}
