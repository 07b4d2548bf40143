import type { Connection } from 'mongoose';

/** One command a store connection sent (the driver's `commandStarted` event, reduced). */
export interface StoreCommand {
  /** The `appName` the connection was opened with (e.g. `ptw-workflow`). */
  appName: string;
  commandName: string;
  /** The collection the command addresses, when it names one. */
  collection?: string;
}

type Listener = (command: StoreCommand) => void;
const listeners = new Set<Listener>();

/**
 * Whether connections opened now should turn on the driver's command monitoring: only while a
 * counter listens (tests, benches), so a service pays nothing for it otherwise.
 */
export function storeMonitoringWanted(): boolean {
  return listeners.size > 0;
}

/** Forwards the commands of a connection opened with `monitorCommands: true` to the counters. */
export function forwardStoreCommands(conn: Connection, appName: string): void {
  conn.getClient().on('commandStarted', (e) => {
    const target = (e.command as Record<string, unknown>)[e.commandName];
    const command: StoreCommand = { appName, commandName: e.commandName, ...(typeof target === 'string' ? { collection: target } : {}) };
    for (const l of listeners) l(command);
  });
}

/** Counts the commands sent by the connections of one `appName` (see {@link countStoreCommands}). */
export interface CommandCounter {
  /** Commands since the last reset. */
  readonly total: number;
  /** The commands since the last reset, as `name collection` → count (for failure messages). */
  byName(): Record<string, number>;
  /** The command names since the last reset, in the order they were sent. */
  names(): string[];
  reset(): void;
  /** Resets, runs `fn`, and returns its result with the number of commands it caused. */
  measure<T>(fn: () => Promise<T>): Promise<{ result: T; commands: number; byName: Record<string, number> }>;
  /** Stops counting. */
  close(): void;
}

/**
 * Counts the store commands of the connections opened with `appName` (every one when omitted).
 * Must be created before those connections are opened (see {@link storeMonitoringWanted}); meant
 * for in-process tests that hold a service to a command budget per operation.
 */
export function countStoreCommands(appName?: string): CommandCounter {
  let seen: StoreCommand[] = [];
  const listener: Listener = (c) => {
    if (appName === undefined || c.appName === appName) seen.push(c);
  };
  listeners.add(listener);
  const byName = () => {
    const out: Record<string, number> = {};
    for (const c of seen) {
      const key = c.collection ? `${c.commandName} ${c.collection}` : c.commandName;
      out[key] = (out[key] ?? 0) + 1;
    }
    return out;
  };
  return {
    get total() {
      return seen.length;
    },
    byName,
    names: () => seen.map((c) => c.commandName),
    reset: () => {
      seen = [];
    },
    measure: async (fn) => {
      seen = [];
      const result = await fn();
      return { result, commands: seen.length, byName: byName() };
    },
    close: () => {
      listeners.delete(listener);
    },
  };
}
