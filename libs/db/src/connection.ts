import mongoose, { type Connection } from 'mongoose';
import type { Logger } from '@ptw/common';
import { forwardStoreCommands, storeMonitoringWanted } from './command-counter';

/**
 * Opens a dedicated mongoose connection (not the global one, so tests can run several services in
 * one process) and builds the indexes every race-sensitive rule rests on before serving.
 */
export async function connectMongo(url: string, log: Logger, opts: { appName: string }): Promise<Connection> {
  const monitor = storeMonitoringWanted();
  const conn = mongoose.createConnection(url, {
    appName: opts.appName,
    // Shorter than the callers' gRPC deadline, so a lost store answers 503 rather than 504.
    serverSelectionTimeoutMS: 4_000,
    // FerretDB has no retryable writes; MongoDB replica sets keep their default behaviour through the URL.
    retryWrites: false,
    autoIndex: false,
    monitorCommands: monitor,
  });
  if (monitor) forwardStoreCommands(conn, opts.appName);
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

/** Creates the indexes of every model registered on `conn` (idempotent). */
export async function ensureIndexes(conn: Connection): Promise<void> {
  for (const model of Object.values(conn.models)) await model.createIndexes();
}
