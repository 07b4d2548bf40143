/**
 * Permit creation in bulk (offline sync): the same rules as {@link createPermit}, written with a
 * bounded number of store commands whatever the number of permits — one permit-type read, one
 * counter step for all the numbers, one insert of the permits, one of their audit events.
 */
import { AppError, inScope, invalidArgument, permissionDenied, type Principal } from '@ptw/common';
import { upsertRetried, type Models } from '@ptw/db';
import { Types } from 'mongoose';
import { createPermitSchema, parseInput, type PermitFields } from './input';
import { activeTypeIds } from './permit-types';
import { insertRegistered } from './registration';
import { risk } from './rules';
import { readFilledBlocks } from './status-blocks';

/** A validated permit to create, before its type is checked and its number allocated. */
export interface PermitDraft {
  typeId: string;
  fields: Record<string, unknown>;
}

/**
 * Checks a create request's fields and the caller's project (SPEC §4 POST /permits/) and builds
 * the new draft's document without its number. Throws the same errors as a single create.
 */
export function permitDraft(who: Principal, data: unknown, now: Date, syncOrigin?: string): PermitDraft {
  const input = parseInput(createPermitSchema, data ?? {}) as PermitFields & { title: string; permit_type_id: string };
  let projectId = input.project_id;
  if (!projectId) {
    if (who.project_ids.length !== 1) throw invalidArgument('project_id: required when you belong to more than one project', { field: 'project_id' });
    projectId = who.project_ids[0];
  }
  if (!inScope(who, projectId)) throw permissionDenied('project_id: you are not a member of this project');
  const p = input.probability ?? 1;
  const s = input.severity ?? 1;
  return {
    typeId: input.permit_type_id,
    fields: {
      ...input,
      project_id: projectId,
      priority: input.priority ?? 'medium',
      probability: p,
      severity: s,
      ...risk(p, s),
      status: 'draft' as const,
      created_by: who.user_id,
      verifier_id: input.verifier_id ?? undefined,
      approver_id: input.approver_id ?? undefined,
      version: 1,
      created_at: now,
      updated_at: now,
      ...(syncOrigin ? { sync_origin: syncOrigin } : {}),
    },
  };
}

/** Refuses planned times that end before they start. */
export function checkTimes(start: Date | undefined | null, end: Date | undefined | null): void {
  if (start && end && end.getTime() <= start.getTime()) {
    throw invalidArgument('planned_end_time: must be after planned_start_time', { field: 'planned_end_time' });
  }
}

const year = (d: Date) => d.getUTCFullYear();

/**
 * Reserves `n` consecutive permit numbers with one counter step. The $inc is not atomic on
 * FerretDB, so two callers may get overlapping ranges: the permits' unique index refuses the
 * second insert of a number and the caller retries only those permits with a fresh range.
 */
export function reserveNumbers(models: Models, now: Date, n: number): Promise<string[]> {
  const y = year(now);
  let byKey = allocators.get(models);
  if (!byKey) allocators.set(models, (byKey = new Map<number, { queue: Ask[]; busy: boolean }>()));
  let a = byKey.get(y);
  if (!a) byKey.set(y, (a = { queue: [], busy: false }));
  const allocator = a;
  return new Promise<number>((resolve, reject) => {
    allocator.queue.push({ n, resolve, reject });
    void pump(models, y, allocator);
  }).then((first) => Array.from({ length: n }, (_, i) => `PTW-${y}-${String(first + i).padStart(6, '0')}`));
}

interface Ask {
  n: number;
  resolve(first: number): void;
  reject(err: unknown): void;
}

/**
 * One counter step at a time per store connection and year, for every request waiting: within a
 * process, concurrent creates never read the same counter value (FerretDB's `$inc` reads, then
 * writes), so their numbers no longer collide and retry; other processes still can, and the unique
 * index still settles those.
 */
const allocators = new WeakMap<Models, Map<number, { queue: Ask[]; busy: boolean }>>();

async function pump(models: Models, y: number, a: { queue: Ask[]; busy: boolean }): Promise<void> {
  if (a.busy) return;
  a.busy = true;
  try {
    while (a.queue.length) {
      const asks = a.queue.splice(0);
      const total = asks.reduce((t, x) => t + x.n, 0);
      try {
        const c = await upsertRetried(() => models.Counter.findOneAndUpdate({ _id: `permit_number:${y}` }, { $inc: { seq: total } }, { upsert: true, new: true }).lean());
        let first = (c?.seq ?? total) - total + 1;
        for (const x of asks) {
          x.resolve(first);
          first += x.n;
        }
      } catch (err) {
        for (const x of asks) x.reject(err);
      }
    }
  } finally {
    a.busy = false;
  }
}

/** One permit of a bulk create: its id is chosen by the caller (sync records it before writing). */
export interface BulkCreateItem {
  id: Types.ObjectId;
  data: unknown;
  syncOrigin?: string;
  /** The sync batch that creates it (see services/sync batch.ts): a re-sent batch finds its permits with one equality. */
  syncBatch?: string;
}

/** The result of one item: the created permit's id, project and version, or the error a single create would throw. */
export type BulkCreateResult = { ok: true; id: string; project_id: string; version: number } | { ok: false; error: AppError };

/**
 * Creates draft permits for `who`, each validated independently (a bad item fails alone). Writes
 * the permits and their `create` audit events; a permit whose id already exists counts as created
 * (a retry of a create that was written before). Store errors are thrown.
 */
export async function createPermits(models: Models, who: Principal, items: BulkCreateItem[], now = new Date()): Promise<BulkCreateResult[]> {
  const results = new Array<BulkCreateResult | undefined>(items.length);
  const drafts: (PermitDraft | undefined)[] = items.map((item, i) => {
    try {
      return permitDraft(who, item.data, now, item.syncOrigin);
    } catch (err) {
      if (!(err instanceof AppError)) throw err;
      results[i] = { ok: false, error: err };
      return undefined;
    }
  });
  const badTimes = new Map<number, AppError>();
  drafts.forEach((d, i) => {
    try {
      if (d) checkTimes(d.fields.planned_start_time as Date | undefined, d.fields.planned_end_time as Date | undefined);
    } catch (err) {
      if (!(err instanceof AppError)) throw err;
      badTimes.set(i, err);
    }
  });
  const typeIds = [...new Set(drafts.filter((d) => d).map((d) => d!.typeId))];
  const toNumber = drafts.filter((d, i) => d && !badTimes.has(i)).length;
  // The type read and the first counter step do not depend on each other: one round trip for both
  // (a permit of an unknown type leaves a gap in the numbers, which may have gaps).
  const [active, firstNumbers] = await Promise.all([activeTypeIds(models, typeIds), toNumber ? reserveNumbers(models, now, toNumber) : []]);
  const docs = new Map<number, Record<string, unknown>>();
  drafts.forEach((d, i) => {
    if (!d) return;
    // The same precedence as a single create: an unknown type before bad times.
    if (!active.has(d.typeId)) results[i] = { ok: false, error: invalidArgument('permit_type_id: unknown permit type', { field: 'permit_type_id' }) };
    else if (badTimes.has(i)) results[i] = { ok: false, error: badTimes.get(i)! };
    else {
      // The schema's defaults as Model.create applies them (the fields are typed by the input schema
      // already); a mongoose document per permit would cost more CPU than its insert.
      const fields = Object.fromEntries(Object.entries(d.fields).filter(([, v]) => v !== undefined));
      docs.set(i, models.Permit.applyDefaults({ ...fields, _id: items[i].id, ...(items[i].syncBatch ? { sync_batch: items[i].syncBatch } : {}) }));
    }
  });

  // Each project's permits at its next places (registration.ts), numbered as reserved above; a
  // permit whose id exists already is one this create wrote before: it is done.
  let k = 0;
  for (const i of docs.keys()) docs.get(i)!.permit_number = firstNumbers[k++];
  const byProject = new Map<string, number[]>();
  for (const i of docs.keys()) {
    const p = docs.get(i)!.project_id as string;
    byProject.set(p, [...(byProject.get(p) ?? []), i]);
  }
  const renumber = async () => (await reserveNumbers(models, now, 1))[0];
  const outcomes = await Promise.all(
    [...byProject].map(([p, idx]) =>
      insertRegistered(
        models,
        p,
        idx.map((i) => docs.get(i)!),
        renumber,
        readFilledBlocks(models, p),
      ),
    ),
  );
  const inserted: number[] = [];
  [...byProject.values()].forEach((idx, n) =>
    idx.forEach((i, j) => {
      if (outcomes[n][j] === 'inserted') inserted.push(i);
      results[i] = { ok: true, id: String(items[i].id), project_id: docs.get(i)!.project_id as string, version: 1 };
    }),
  );
  if (inserted.length) {
    await models.AuditEvent.insertMany(
      inserted.map((i) => ({ permit_id: String(items[i].id), project_id: docs.get(i)!.project_id, action: 'create', to: 'draft', user_id: who.user_id, comments: '', at: now })),
      { lean: true },
    );
  }
  return results as BulkCreateResult[];
}
