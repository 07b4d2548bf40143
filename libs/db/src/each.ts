/**
 * Set lookups as equality queries. FerretDB 1.24 does not push `$in` down to its backend: `{_id:
 * {$in: ids}}` decodes the whole collection in FerretDB's process before it filters, so its cost
 * grows with the collection, not with the ids. One equality query per value is answered from an
 * index on every store (MongoDB included) and costs what it returns.
 */
import type { Model } from 'mongoose';

/**
 * Waits for `work` at most `ms` (a start-up warm-up: what is not done by then goes on in the
 * background, and its failure then is dropped). A failure within `ms` rejects.
 */
export async function waitAtMost(work: Promise<unknown>, ms: number): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  try {
    await Promise.race([work, new Promise<void>((r) => (timer = setTimeout(r, ms)))]);
  } finally {
    clearTimeout(timer);
    work.catch(() => undefined);
  }
}

/** Runs `fn` over `items` with at most `concurrency` calls in flight; results in input order. */
export async function mapLimit<T, R>(items: readonly T[], concurrency: number, fn: (item: T, i: number) => PromiseLike<R>): Promise<R[]> {
  const out: R[] = new Array<R>(items.length);
  let next = 0;
  const worker = async () => {
    for (let i = next++; i < items.length; i = next++) out[i] = await fn(items[i], i);
  };
  await Promise.all(Array.from({ length: Math.min(Math.max(1, concurrency), items.length) }, worker));
  return out;
}

/** How many lookups of one set run at once (a fraction of the driver's pool of 100). */
export const EACH_CONCURRENCY = 16;

// eslint-disable-next-line @typescript-eslint/no-explicit-any -- any model of the registry
type AnyModel = Model<any>;

/**
 * The documents whose `field` equals one of `values` (each distinct value once), with `filter`'s
 * other conditions: one equality query per value. Order: by value as given, then as the store
 * returns each value's documents (`sort` orders within a value).
 */
export async function findEach<T = Record<string, unknown>>(
  model: AnyModel,
  field: string,
  values: readonly unknown[],
  opts: { filter?: Record<string, unknown>; projection?: Record<string, unknown>; sort?: Record<string, 1 | -1>; concurrency?: number } = {},
): Promise<T[]> {
  const distinct = [...new Map(values.map((v) => [String(v), v])).values()];
  const parts = await mapLimit<unknown, T[]>(distinct, opts.concurrency ?? EACH_CONCURRENCY, (v) => {
    const q = model.find({ ...opts.filter, [field]: v }, opts.projection ?? null);
    return (opts.sort ? q.sort(opts.sort) : q).lean();
  });
  return parts.flat();
}

/** Deletes the documents of `ids` one `deleteOne({_id})` each (a `$in` delete scans the collection on FerretDB). */
export async function deleteEach(model: { deleteOne(filter: object): PromiseLike<unknown> }, ids: readonly unknown[], filter: Record<string, unknown> = {}): Promise<void> {
  await mapLimit(ids, EACH_CONCURRENCY, (id) => model.deleteOne({ ...filter, _id: id }));
}
