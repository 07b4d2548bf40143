/**
 * The local stack's stores: FerretDB (built from ./main.go, on PostgreSQL or SQLite) standing in for
 * MongoDB, and Redis.
 * Used by `make up` and by the end-to-end tests; `MONGO_URL` / `REDIS_URL` make both unnecessary.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { startPrivateCluster, type PrivateCluster, type StoreDurability } from './postgres';

export type { StoreDurability } from './postgres';

/** The store's binary per backend (`make store`, `make store-sqlite`): each holds its own backend only. */
export const STORE_BINARIES: Readonly<Record<StoreBackend, string>> = {
  postgresql: path.resolve(__dirname, '..', 'bin', 'ferretdb-local'),
  sqlite: path.resolve(__dirname, '..', 'bin', 'ferretdb-local-sqlite'),
};
const MAKE_TARGET: Readonly<Record<StoreBackend, string>> = { postgresql: 'store', sqlite: 'store-sqlite' };

/** The local store's backend: FerretDB on PostgreSQL (default, measured faster) or on SQLite. */
export type StoreBackend = 'postgresql' | 'sqlite';

/** `PTW_STORE_BACKEND` (postgresql | sqlite), default postgresql. */
export function storeBackend(env: NodeJS.ProcessEnv = process.env): StoreBackend {
  const v = env.PTW_STORE_BACKEND || 'postgresql';
  if (v !== 'postgresql' && v !== 'sqlite') throw new Error(`PTW_STORE_BACKEND: expected postgresql or sqlite, got "${v}"`);
  return v;
}

/** `PTW_STORE_DURABILITY` (durable | fast); undefined when unset (the caller's default applies). */
export function storeDurability(env: NodeJS.ProcessEnv = process.env): StoreDurability | undefined {
  const v = env.PTW_STORE_DURABILITY;
  if (!v) return undefined;
  if (v !== 'durable' && v !== 'fast') throw new Error(`PTW_STORE_DURABILITY: expected durable or fast, got "${v}"`);
  return v;
}

export interface RunningStore {
  /** mongodb:// URL of the running store, database name included. */
  url: string;
  backend: StoreBackend;
  process: ChildProcess;
  /** The store's folder (SQLite files, or the private PostgreSQL cluster in `pg/`); removed by stop() when startStore made it (no `dataDir` given). */
  dataDir: string;
  /** Its private PostgreSQL cluster, when it started one. */
  cluster?: PrivateCluster;
  stop(): Promise<void>;
}

/**
 * Starts FerretDB on a free loopback port and resolves once it accepts connections. Backend:
 * `opts.backend`, else PTW_STORE_BACKEND. On PostgreSQL it uses `opts.postgresqlUrl` /
 * PTW_STORE_POSTGRESQL_URL when given, else a private cluster of its own in `<dataDir>/pg`,
 * stopped with the store. A folder it creates itself (no `dataDir`) is deleted on stop() or when
 * the start fails; a given `dataDir` is kept (`make up` and restarts reuse theirs). The private
 * cluster's durability: `opts.durability`, else PTW_STORE_DURABILITY, else `durable` for a given
 * `dataDir` (kept) and `fast` for a folder of its own (deleted on stop, nothing to keep).
 */
export async function startStore(
  opts: { dataDir?: string; port?: number; database?: string; backend?: StoreBackend; postgresqlUrl?: string; durability?: StoreDurability; poolMaxConns?: number } = {},
): Promise<RunningStore> {
  const backend = opts.backend ?? storeBackend();
  const binary = STORE_BINARIES[backend];
  if (!fs.existsSync(binary)) {
    throw new Error(`${binary} is missing: run \`make ${MAKE_TARGET[backend]}\` (or \`make test\`, which builds both stores, or \`make up\`)`);
  }
  const dataDir = opts.dataDir ?? fs.mkdtempSync(path.join(os.tmpdir(), 'ptw-store-'));
  fs.mkdirSync(dataDir, { recursive: true });
  const removeOwnDir = () => {
    if (!opts.dataDir) fs.rmSync(dataDir, { recursive: true, force: true });
  };
  let cluster: PrivateCluster | undefined;
  const args = ['--listen', `127.0.0.1:${opts.port ?? 0}`, '--sqlite-dir', dataDir];
  // Profiling the store under load (`go tool pprof http://<addr>/debug/pprof/profile`): loopback only.
  if (process.env.PTW_STORE_DEBUG_LISTEN) args.push('--debug-listen', process.env.PTW_STORE_DEBUG_LISTEN);
  if (backend === 'postgresql') {
    let pgUrl = opts.postgresqlUrl ?? process.env.PTW_STORE_POSTGRESQL_URL;
    if (!pgUrl) {
      try {
        cluster = await startPrivateCluster(dataDir, { durability: opts.durability ?? storeDurability() ?? (opts.dataDir ? 'durable' : 'fast') });
      } catch (err) {
        removeOwnDir();
        throw err;
      }
      pgUrl = cluster.url;
    }
    // FerretDB's PostgreSQL pool (50 unless the URL says): above the services' pools summed (4 × 10
    // by default, see @ptw/db connectMongo) with room for jobs, tests and tools, under the private
    // cluster's 100 connections.
    if (!/[?&]pool_max_conns=/.test(pgUrl)) pgUrl += `${pgUrl.includes('?') ? '&' : '?'}pool_max_conns=${opts.poolMaxConns ?? 90}`;
    args.push('--handler', 'postgresql', '--postgresql-url', pgUrl);
  } else args.push('--handler', 'sqlite');
  const stopAll = async (child: ChildProcess) => {
    await stopChild(child);
    await cluster?.stop();
    removeOwnDir();
  };
  const child = spawn(binary, args, {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stderr = '';
  child.stderr?.on('data', (d: Buffer) => {
    stderr = (stderr + d.toString()).slice(-4000);
  });
  const started = new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`store did not start within 30 s: ${stderr}`)), 30_000);
    let out = '';
    child.stdout?.on('data', (d: Buffer) => {
      out += d.toString();
      const m = /ready (mongodb:\/\/[^\s]+)/.exec(out);
      if (m) {
        clearTimeout(timer);
        resolve(m[1].replace(/\/$/, ''));
      }
    });
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`store exited with code ${code}: ${stderr}`));
    });
  });
  let base: string;
  try {
    base = await started;
  } catch (err) {
    await stopAll(child);
    throw err;
  }
  return {
    url: `${base}/${opts.database ?? 'ptw'}`,
    backend,
    process: child,
    dataDir,
    cluster,
    stop: () => stopAll(child),
  };
}

/** SIGTERM, then SIGKILL after 5 s; resolves when the process is gone. */
export function stopChild(child: ChildProcess, graceMs = 5000): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => {
    const timer = setTimeout(() => child.kill('SIGKILL'), graceMs);
    child.once('exit', () => {
      clearTimeout(timer);
      resolve();
    });
    child.kill('SIGTERM');
  });
}

/** True when something accepts TCP connections on host:port within `timeoutMs`. */
export function canConnect(host: string, port: number, timeoutMs = 500): Promise<boolean> {
  return new Promise((resolve) => {
    const sock = net.connect({ host, port });
    const done = (ok: boolean) => {
      sock.destroy();
      resolve(ok);
    };
    sock.setTimeout(timeoutMs, () => done(false));
    sock.once('connect', () => done(true));
    sock.once('error', () => done(false));
  });
}

/**
 * Returns a Redis URL: the one on 127.0.0.1:6379 when it answers, else a `redis-server` started on
 * that port without persistence (the machine's package), like `.ci/run` does.
 */
export async function ensureRedis(): Promise<string> {
  const url = 'redis://127.0.0.1:6379';
  if (await canConnect('127.0.0.1', 6379)) return url;
  const r = spawnSync('redis-server', ['--daemonize', 'yes', '--bind', '127.0.0.1', '-::1', '--port', '6379', '--save', '', '--appendonly', 'no'], {
    stdio: 'inherit',
  });
  if (r.error || r.status !== 0) throw new Error('Redis is not answering on 127.0.0.1:6379 and redis-server could not be started');
  for (let i = 0; i < 50; i++) {
    if (await canConnect('127.0.0.1', 6379)) return url;
    await new Promise((res) => setTimeout(res, 100));
  }
  throw new Error('redis-server started but does not answer on 127.0.0.1:6379');
}

/** A free TCP port on loopback (for processes that cannot report the port they bound). */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const addr = srv.address() as net.AddressInfo;
      srv.close(() => resolve(addr.port));
    });
  });
}

/**
 * A store for one test file: a database of its own on MONGO_URL when set (real MongoDB), else a
 * fresh FerretDB process with its own data folder (and its own PostgreSQL cluster on that backend).
 */
export async function testStore(name: string, opts: { poolMaxConns?: number } = {}): Promise<{ url: string; stop(): Promise<void> }> {
  const db = `ptw_${name.replace(/[^A-Za-z0-9_]/g, '_')}_${process.pid}_${Date.now()}`;
  if (process.env.MONGO_URL) {
    const u = new URL(process.env.MONGO_URL);
    u.pathname = `/${db}`;
    return { url: u.toString(), stop: () => Promise.resolve() };
  }
  const store = await startStore({ database: db, ...opts });
  return { url: store.url, stop: () => store.stop() };
}
