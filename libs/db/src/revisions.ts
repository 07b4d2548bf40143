import type { Models } from './models';

/** Entities whose writes are version-guarded. */
export type VersionedEntity = 'permit' | 'isolation_point' | 'closeout';

function isDuplicateKey(err: unknown): boolean {
  return typeof err === 'object' && err !== null && (err as { code?: number }).code === 11000;
}

/**
 * Claims version `fromVersion + 1` of an entity by inserting its revision row. The unique index
 * `(entity, entity_id, version)` lets exactly one of several concurrent writers that read the same
 * version win, on FerretDB as on MongoDB. The winner then updates the document with the filter
 * `{_id, version: fromVersion}`; losers get `false` and answer a conflict.
 */
export async function claimVersion(models: Models, entity: VersionedEntity, entityId: string, fromVersion: number, userId: string): Promise<boolean> {
  try {
    await models.Revision.create({ entity, entity_id: entityId, version: fromVersion + 1, user_id: userId, at: new Date() });
    return true;
  } catch (err) {
    if (isDuplicateKey(err)) return false;
    throw err;
  }
}

/**
 * Bulk form of {@link claimVersion} for jobs: one unordered insert for all items; returns the ids
 * whose next version was claimed (the others were written concurrently and must be skipped).
 */
export async function claimVersions(
  models: Models,
  entity: VersionedEntity,
  items: { id: string; fromVersion: number }[],
  userId: string,
): Promise<Set<string>> {
  if (items.length === 0) return new Set();
  const at = new Date();
  const docs = items.map((i) => ({ entity, entity_id: i.id, version: i.fromVersion + 1, user_id: userId, at }));
  const failed = new Set<number>();
  try {
    await models.Revision.insertMany(docs, { ordered: false });
  } catch (err) {
    const writeErrors = (err as { writeErrors?: { index?: number; err?: { index?: number; code?: number }; code?: number }[] }).writeErrors;
    if (!writeErrors) throw err;
    for (const we of writeErrors) {
      const code = we.code ?? we.err?.code;
      if (code !== 11000) throw err;
      failed.add(we.index ?? we.err?.index ?? -1);
    }
  }
  return new Set(items.filter((_, i) => !failed.has(i)).map((i) => i.id));
}

export { isDuplicateKey };
