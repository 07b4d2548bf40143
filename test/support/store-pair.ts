import { createLogger } from '@ptw/common';
import { connectMongo, ensureIndexes, registerModels, type Models } from '@ptw/db';
import { testStore } from '@ptw/devstore';
import type { Connection } from 'mongoose';

/** What {@link storePair} hands a component test once its `beforeAll` has run. */
export interface StorePair {
  url: string;
  /** The models of the first and second "process" (a connection each, named by `apps`). */
  a: Models;
  b: Models;
  /** Another connection to the same store, closed with the others (`appName` as a counter expects). */
  connect(appName: string): Promise<Models>;
}

/**
 * A fresh test store and two connections to it, as two processes of the product would have, opened
 * in a `beforeAll` and closed in an `afterAll` of the calling test file. `beforeConnect` runs before
 * the connections open (a command counter must listen by then to see a connection's commands).
 */
export function storePair(name: string, apps: [string, string], beforeConnect?: () => void): StorePair {
  const conns: Connection[] = [];
  let store: { url: string; stop(): Promise<void> } | undefined;
  const pair = {} as StorePair;
  const open = async (appName: string) => {
    const conn = await connectMongo(pair.url, createLogger('test', { stdout: false }), { appName });
    conns.push(conn);
    return registerModels(conn);
  };
  beforeAll(async () => {
    store = await testStore(name);
    pair.url = store.url;
    pair.connect = open;
    beforeConnect?.();
    pair.a = await open(apps[0]);
    pair.b = await open(apps[1]);
    await ensureIndexes(conns[0]);
  });
  afterAll(async () => {
    for (const c of conns) await c.close();
    await store?.stop();
  });
  return pair;
}
