import type { Models } from './models';

/** Entities whose writes are version-guarded. */
export type VersionedEntity = 'permit' | 'isolation_point' | 'closeout';

function isDuplicateKey(err: unknown): boolean {
  return typeof err === 'object' && err !== null && (err as { code?: number }).code === 11000;
}

/**
 * Runs an upsert by `_id` once more when it lost the race to insert its document: two first upserts
 * of one `_id` at once surface on FerretDB as a duplicate key (MongoDB retries such an upsert
 * itself). The document exists then, so the second run updates it.
 */
export async function upsertRetried<T>(upsert: () => Promise<T>): Promise<T> {
  try {
    return await upsert();
  } catch (err) {
    if (!isDuplicateKey(err)) throw err;
    return upsert();
  }
}

/**
 * Claims version `fromVersion + 1` of an entity by inserting its revision row. The unique index
 * `(entity, entity_id, version)` lets exactly one of several concurrent writers that read the same
 * version win, on FerretDB as on MongoDB. The winner then updates the document with the filter
 * `{_id, version: fromVersion}`; losers get `false` and answer a conflict.
 */
export async function claimVersion(models: Models, entity: VersionedEntity, entityId: string, fromVersion: number, userId: string): Promise<boolean> {
  for (let attempt = 0; attempt < 2; attempt++) {
    try {
      await insertOne(models.Revision, { entity, entity_id: entityId, version: fromVersion + 1, user_id: userId, at: new Date() });
      return true;
    } catch (err) {
      if (!isDuplicateKey(err)) throw err;
      if (attempt > 0 || !(await releaseOrphan(models, entity, entityId, fromVersion))) return false;
    }
  }
  return false;
}

/** A claim older than this whose document never moved on was left by a writer that died. */
export const ORPHAN_CLAIM_MS = 15_000;

const DOCS = { permit: 'Permit', isolation_point: 'IsolationPoint', closeout: 'Closeout' } as const;

/**
 * When a writer dies between claiming version N+1 and updating the document, the document stays at
 * N and every later writer would conflict forever. A claim older than any call deadline whose
 * document is still at N is released here (removed), so the next claim can win.
 */
export async function releaseOrphan(models: Models, entity: VersionedEntity, entityId: string, fromVersion: number): Promise<boolean> {
  const claim = await models.Revision.findOne({ entity, entity_id: entityId, version: fromVersion + 1 }).lean();
  if (!claim || Date.now() - new Date(claim.at).getTime() < ORPHAN_CLAIM_MS) return false;
  const model = models[DOCS[entity]] as unknown as { findById(id: string, p: object): { lean(): Promise<{ version?: number } | null> } };
  const doc = await model.findById(entityId, { version: 1 }).lean();
  if (!doc || doc.version !== fromVersion) return false;
  await models.Revision.deleteOne({ _id: claim._id });
  return true;
}

/**
 * Bulk form of {@link claimVersion} for jobs: one unordered insert for all items; returns the ids
 * whose next version was claimed (the others were written concurrently and must be skipped).
 */
export async function claimVersions(models: Models, entity: VersionedEntity, items: { id: string; fromVersion: number }[], userId: string): Promise<Set<string>> {
  if (items.length === 0) return new Set();
  const at = new Date();
  const docs = items.map((i) => ({ entity, entity_id: i.id, version: i.fromVersion + 1, user_id: userId, at }));
  const failed = await insertUnordered(models.Revision, docs);
  // Orphaned claims (a writer died mid-write) are released for the next run to pick up.
  for (const i of failed) if (items[i]) await releaseOrphan(models, entity, items[i].id, items[i].fromVersion);
  return new Set(items.filter((_, i) => !failed.has(i)).map((i) => i.id));
}

/**
 * Inserts `docs` with one unordered insertMany (a duplicate stops only itself) and returns the
 * indexes of the documents refused by a unique index; any other error is thrown.
 */
export async function insertUnordered(model: { insertMany(docs: object[], opts: object): Promise<unknown> }, docs: object[], opts: { lean?: boolean } = {}): Promise<Set<number>> {
  const failed = new Set<number>();
  if (docs.length === 0) return failed;
  try {
    await model.insertMany(docs, { ordered: false, ...opts });
  } catch (err) {
    const writeErrors = (err as { writeErrors?: { index?: number; err?: { index?: number; code?: number }; code?: number }[] }).writeErrors;
    if (!writeErrors) throw err;
    for (const we of writeErrors) {
      const code = we.code ?? we.err?.code;
      if (code !== 11000) throw err;
      failed.add(we.index ?? we.err?.index ?? -1);
    }
  }
  return failed;
}

/**
 * Writes one document built by the caller (already of its schema's types) with the schema's
 * defaults: what `Model.create` writes, without the mongoose document it builds first (casting,
 * validation, save hooks and a stack capture per save: more of the sync service's CPU than the
 * insert's round trip). A duplicate key throws as create does (`code` 11000).
 */
export async function insertOne(model: { applyDefaults(doc: object): object; insertMany(docs: object[], opts: object): Promise<unknown> }, doc: object): Promise<void> {
  await model.insertMany([model.applyDefaults(doc)], { lean: true });
}

export { isDuplicateKey };
