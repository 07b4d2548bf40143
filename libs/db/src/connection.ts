import mongoose, { type Connection } from 'mongoose';
import type { Logger } from '@ptw/common';
import { forwardStoreCommands } from './command-counter';
import { forwardQueries, queryCaptureWanted } from './pushdown';

/** Store operations a process runs at once unless told (MONGO_MAX_POOL_SIZE). */
export const DEFAULT_MAX_POOL_SIZE = 10;

/**
 * Opens a dedicated mongoose connection to the store (not the global one, so tests can run several
 * services in one process). `maxPoolSize` bounds the operations this process runs at once (the
 * driver queues the rest): FerretDB 1.24 answers a findAndModify with a PostgreSQL connection held
 * by its query while it takes a second one for the update, so when every connection of its pool
 * (50 by default) is held that way it waits forever — seen at 60 tablets of the load test, every
 * request timing out and the store idle. With the processes' pools summing to less than the
 * store's, some connection is always free (libs/devstore gives the local store 90).
 */
export async function connectMongo(url: string, log: Logger, opts: { appName: string; maxPoolSize?: number }): Promise<Connection> {
  // Mongoose keeps `new Error().stack` of every query it runs, for one message ("Query was already
  // executed", which our code never provokes); capturing and formatting it was ~3 % of the sync
  // service's busy CPU under `make load` (docs/benchmarks.md "Shift-start load"). A documented option.
  mongoose.set('skipOriginalStackTraces', true);
  const monitor = queryCaptureWanted();
  const conn = mongoose.createConnection(url, {
    appName: opts.appName,
    maxPoolSize: opts.maxPoolSize ?? DEFAULT_MAX_POOL_SIZE,
    // Shorter than the callers' gRPC deadline, so a lost store answers 503 rather than 504.
    serverSelectionTimeoutMS: 4_000,
    // FerretDB has no retryable writes; MongoDB replica sets keep their default behaviour through the URL.
    retryWrites: false,
    autoIndex: false,
    monitorCommands: monitor,
  });
  if (monitor) {
    forwardStoreCommands(conn, opts.appName);
    forwardQueries(conn, opts.appName);
  }
  conn.on('disconnected', () => log.warn({ event: 'mongo_disconnected' }, 'store disconnected'));
  conn.on('reconnected', () => log.info({ event: 'mongo_reconnected' }, 'store reconnected'));
  await conn.asPromise();
  return conn;
}

/** Reports the connection's state changes (services turn them into their grpc.health.v1 status). */
export function watchConnection(conn: Connection, setServing: (serving: boolean) => void): void {
  conn.on('disconnected', () => setServing(false));
  conn.on('connected', () => setServing(true));
  conn.on('reconnected', () => setServing(true));
}

/**
 * Creates the indexes of every model registered on `conn` (idempotent). Every service does this
 * at start, at once under `make up`: FerretDB's SQLite backend answers a second concurrent creation
 * of the same index with "index … already exists" instead of success, so a failed round is tried
 * again (it then finds the index made).
 */
export async function ensureIndexes(conn: Connection, attempts = 4): Promise<void> {
  for (let attempt = 1; ; attempt++) {
    try {
      for (const model of Object.values(conn.models)) await createModelIndexes(model);
      return;
    } catch (err) {
      if (attempt >= attempts || !/already exists/.test(String((err as Error).message))) throw err;
      await new Promise((r) => setTimeout(r, 100 * attempt));
    }
  }
}

/**
 * A model's indexes, one by one. A partial index the store does not implement (FerretDB 1.24
 * answers NotImplemented for `partialFilterExpression`) is made without its filter: the partial
 * indexes here only keep missing values from colliding, which FerretDB's PostgreSQL indexes never do.
 */
async function createModelIndexes(model: Connection['models'][string]): Promise<void> {
  for (const [keys, options] of model.schema.indexes()) {
    try {
      await model.collection.createIndex(keys as Record<string, 1 | -1>, { background: true, ...(options as Record<string, unknown>) });
    } catch (err) {
      const partial = (options as { partialFilterExpression?: unknown }).partialFilterExpression;
      if (!partial || (err as { code?: number }).code !== 238) throw err;
      const { partialFilterExpression: _, ...rest } = options as Record<string, unknown>;
      await model.collection.createIndex(keys as Record<string, 1 | -1>, { background: true, ...rest });
    }
  }
}
