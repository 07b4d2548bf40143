/**
 * Runs the whole system as real processes: the store (unless MONGO_URL), Redis (unless REDIS_URL),
 * the four services and the gateway, each `node <pkg>/dist/main.js` with its own ports. Used by
 * `make up` and by the end-to-end tests.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import { canConnect, ensureRedis, freePort, startStore, stopChild, storeDurability, type RunningStore, type StoreDurability } from './index';

export const REPO_ROOT = path.resolve(__dirname, '..', '..', '..');
export const SERVICES = ['workflow', 'sync', 'export', 'health'] as const;
export type ProcessName = (typeof SERVICES)[number] | 'gateway';

export interface StackOptions {
  /** Fixed ports (make up) or free ones (tests). */
  ports: 'default' | 'free';
  /** How a free port is probed (default: bind port 0 and release it); tests hand out a taken one. */
  pickPort?: () => Promise<number>;
  logDir: string;
  mongoUrl?: string;
  redisUrl?: string;
  /**
   * The local store's settings (StoreDurability); default PTW_STORE_DURABILITY, else `durable` for
   * the default ports (`make up`: its store is kept) and `fast` for free ones (tests, benches).
   */
  durability?: StoreDurability;
  /** Extra environment for every process. */
  env?: Record<string, string>;
  /** Where child output goes; default: discarded (the log files keep it). */
  stdio?: 'inherit' | 'ignore';
}

export interface Stack {
  gatewayUrl: string;
  mongoUrl: string;
  redisUrl: string;
  env: Record<string, string>;
  /** Each service's /metrics port (the gateway serves /metrics on its HTTP port). */
  metricsPorts: Record<(typeof SERVICES)[number], number>;
  procs: Record<ProcessName, ChildProcess>;
  store?: RunningStore;
  start(name: ProcessName): Promise<ChildProcess>;
  /** Kills the local store (SIGKILL) — a crash, for resilience tests. */
  killStore(): Promise<void>;
  /** Starts the local store again on the same port and data folder. */
  restartStore(): Promise<void>;
  stop(): Promise<void>;
}

/**
 * `make up`'s ports, all below Linux's ephemeral range (32768–60999) so that no outgoing connection
 * (the services' own to the store, say) can hold one as its source port when the stack starts.
 */
export const DEFAULT_PORTS: Record<ProcessName, { grpc?: number; metrics?: number; http?: number }> = {
  sync: { grpc: 15051, metrics: 9101 },
  workflow: { grpc: 15052, metrics: 9102 },
  export: { grpc: 15053, metrics: 9103 },
  health: { grpc: 15054, metrics: 9104 },
  gateway: { http: 8080 },
};

/**
 * A free loopback port not in `taken` (then added to it). freePort binds port 0 and releases it at
 * once, so two calls can return the same port: without this, a stack's gateway and a service's
 * metrics server were once given one port, and the gateway's requests reached the metrics server.
 */
export async function distinctPort(taken: Set<number>, pick: () => Promise<number> = freePort): Promise<number> {
  for (let i = 0; i < 100; i++) {
    const p = await pick();
    if (!taken.has(p)) {
      taken.add(p);
      return p;
    }
  }
  throw new Error('no distinct free port found in 100 tries');
}

/**
 * `GET <url>/healthz` on a connection of its own, with node:http rather than fetch: this asks who holds
 * a port, it is not a client of the API (the e2e suites check every fetch of the gateway's paths
 * against the OpenAPI document, and another process's answer would fail that check). Resolves with the
 * HTTP status, the body's `status` (undefined when the body is not JSON) and the X-Request-Id.
 */
function getHealthz(url: string, timeoutMs: number): Promise<{ code: number; status: unknown; requestId: unknown }> {
  return new Promise((resolve, reject) => {
    const req = http.get(`${url}/healthz`, { agent: false, timeout: timeoutMs }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => (body += chunk));
      res.on('end', () => {
        let status: unknown;
        try {
          status = (JSON.parse(body) as { status?: unknown } | null)?.status;
        } catch {
          status = undefined;
        }
        resolve({ code: res.statusCode ?? 0, status, requestId: res.headers['x-request-id'] });
      });
      res.on('error', reject);
    });
    req.on('timeout', () => req.destroy(new Error('no answer in time')));
    req.on('error', reject);
  });
}

/**
 * True when `url` answers `/healthz` as the gateway does (200, `{"status":"ok"}`, an X-Request-Id)
 * while `child` still runs: a port held by another process answers otherwise or not at all.
 */
export async function answersAsGateway(url: string, child?: ChildProcess, timeoutMs = 10_000): Promise<boolean> {
  const until = Date.now() + timeoutMs;
  while (Date.now() < until) {
    if (child && child.exitCode !== null) return false;
    try {
      const res = await getHealthz(url, 1000);
      if (res.code === 200 && res.status === 'ok' && res.requestId) return !child || child.exitCode === null;
      return false;
    } catch {
      // Not answering HTTP yet (listening, still starting): try again.
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  return false;
}

/**
 * True once `service`'s own metrics answer at `url` (`/metrics`, 200, its `service` label) while
 * `child` still runs. A service binds its metrics port after its gRPC one may already accept
 * connections, and a port taken by another process answers otherwise: this waits until the service
 * holds it or has exited (its stderr then says why).
 */
async function servesMetricsOf(url: string, service: string, child: ChildProcess, timeoutMs = 30_000): Promise<boolean> {
  const until = Date.now() + timeoutMs;
  while (Date.now() < until && child.exitCode === null) {
    try {
      const res = await fetch(`${url}/metrics`, { signal: AbortSignal.timeout(1000) });
      const text = await res.text();
      if (res.status === 200 && text.includes(`service="${service}"`)) return child.exitCode === null;
    } catch {
      // Not answering HTTP yet: try again.
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  return false;
}

async function waitForPort(port: number, child: ChildProcess, name: string, timeoutMs = 60_000): Promise<void> {
  const until = Date.now() + timeoutMs;
  while (Date.now() < until) {
    if (child.exitCode !== null) throw new Error(`${name} exited with code ${child.exitCode} during start-up (see its log)`);
    if (await canConnect('127.0.0.1', port, 300)) return;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`${name} did not listen on ${port} within ${timeoutMs} ms`);
}

/** The local store's durability for a stack: the option, else PTW_STORE_DURABILITY, else durable for `make up`'s ports and fast for free ones. */
export function stackDurability(opts: Pick<StackOptions, 'ports' | 'durability'>, env: NodeJS.ProcessEnv = process.env): StoreDurability {
  return opts.durability ?? storeDurability(env) ?? (opts.ports === 'default' ? 'durable' : 'fast');
}

/** Starts everything and resolves when every process accepts connections. */
export async function startStack(opts: StackOptions): Promise<Stack> {
  fs.mkdirSync(opts.logDir, { recursive: true });
  let store: RunningStore | undefined;
  const storeDir = path.join(opts.logDir, 'store-data');
  const durability = stackDurability(opts);
  const mongoUrl = opts.mongoUrl ?? (store = await startStore({ dataDir: storeDir, durability })).url;
  const storePort = Number(new URL(mongoUrl).port);
  const redisUrl = opts.redisUrl ?? (await ensureRedis());
  // Free ports are probed one by one and released at once: the kernel may hand the same one out twice,
  // and two processes of one stack must never be given the same port (see distinctPort).
  const taken = new Set<number>();
  const pick = opts.pickPort ?? freePort;
  const port = async (n: number | undefined) => (opts.ports === 'default' && n ? n : distinctPort(taken, pick));
  const grpcPorts = {} as Record<string, number>;
  const metricsPorts = {} as Record<string, number>;
  for (const s of SERVICES) {
    grpcPorts[s] = await port(DEFAULT_PORTS[s].grpc);
    metricsPorts[s] = await port(DEFAULT_PORTS[s].metrics);
  }
  let httpPort = await port(DEFAULT_PORTS.gateway.http);
  const env: Record<string, string> = {
    ...(process.env as Record<string, string>),
    MONGO_URL: mongoUrl,
    REDIS_URL: redisUrl,
    LOG_DIR: opts.logDir,
    PTW_SYNC_ADDR: `127.0.0.1:${grpcPorts.sync}`,
    PTW_WORKFLOW_ADDR: `127.0.0.1:${grpcPorts.workflow}`,
    PTW_EXPORT_ADDR: `127.0.0.1:${grpcPorts.export}`,
    PTW_HEALTH_ADDR: `127.0.0.1:${grpcPorts.health}`,
    GATEWAY_PORT: String(httpPort),
    ...opts.env,
  };
  const procs = {} as Record<ProcessName, ChildProcess>;
  /** Until startStack returns: the gateway's port may still move (nobody has its URL yet). */
  let starting = true;
  /**
   * Starts `name` and waits until it serves its gRPC port (and, for a service, its own metrics; the
   * gateway: its HTTP API). With free ports, a port taken between its probe and its bind (another
   * process's ephemeral port or a browser's: seen in CI) is replaced by a fresh one and the process
   * started again, at most 3 times: a service's metrics port (no other process is given it, while a
   * gRPC port is in every process's environment), and the gateway's HTTP port while the stack starts.
   */
  const start = async (name: ProcessName): Promise<ChildProcess> => {
    for (let attempt = 1; ; attempt++) {
      try {
        return await startOnce(name);
      } catch (err) {
        const message = (err as Error).message;
        const ownPort = name === 'gateway' ? httpPort : metricsPorts[name];
        const portTaken = message.includes(`127.0.0.1:${ownPort} is in use`) || message.includes(`127.0.0.1:${ownPort} is answered by another process`);
        const movable = name !== 'gateway' || starting;
        if (opts.ports !== 'free' || !portTaken || !movable || attempt >= 3) throw err;
        if (name === 'gateway') {
          httpPort = await distinctPort(taken, pick);
          env.GATEWAY_PORT = String(httpPort);
        } else {
          metricsPorts[name] = await distinctPort(taken, pick);
        }
      }
    }
  };
  const startOnce = async (name: ProcessName): Promise<ChildProcess> => {
    const main = path.join(REPO_ROOT, name === 'gateway' ? 'gateway' : `services/${name}`, 'dist', 'main.js');
    const child = spawn(process.execPath, [main], {
      env: name === 'gateway' ? env : { ...env, PTW_METRICS_LISTEN: `127.0.0.1:${metricsPorts[name]}` },
      stdio: ['ignore', opts.stdio ?? 'ignore', opts.stdio === 'inherit' ? 'inherit' : 'pipe'],
    });
    procs[name] = child;
    let stderr = '';
    child.stderr?.on('data', (d: Buffer) => {
      stderr = (stderr + d.toString()).slice(-4000);
    });
    try {
      await waitForPort(name === 'gateway' ? httpPort : grpcPorts[name], child, name);
      // Something listening is not proof the gateway is: another process could hold the port (it
      // then exits with EADDRINUSE, and every request would reach the other process).
      if (name === 'gateway' && !(await answersAsGateway(`http://127.0.0.1:${httpPort}`, child))) {
        throw new Error(`gateway: 127.0.0.1:${httpPort} is answered by another process`);
      }
      if (name !== 'gateway' && !(await servesMetricsOf(`http://127.0.0.1:${metricsPorts[name]}`, name, child))) {
        throw new Error(
          child.exitCode !== null
            ? `${name} exited with code ${child.exitCode} during start-up (see its log)`
            : `${name}: its metrics port 127.0.0.1:${metricsPorts[name]} is answered by another process`,
        );
      }
    } catch (err) {
      throw new Error(`${(err as Error).message}\n${stderr}`);
    }
    return child;
  };
  const stop = async () => {
    await Promise.all(Object.values(procs).map((p) => stopChild(p, 15_000)));
    await store?.stop();
  };
  // The four services at once (none needs another to start; ensureIndexes takes concurrent
  // creations), then the gateway, once they all listen: one at a time, a stack took ~9 s to start
  // here, this way ~6 s. Settled, not Promise.all: stop() must not run while a process is still being spawned.
  try {
    const failed = (await Promise.allSettled(SERVICES.map((name) => start(name)))).find((r): r is PromiseRejectedResult => r.status === 'rejected');
    if (failed) throw failed.reason;
    await start('gateway');
  } catch (err) {
    await stop();
    throw err;
  }
  starting = false;
  const killStore = async () => {
    if (!store) throw new Error('the store is external (MONGO_URL); it cannot be killed here');
    const s = store;
    await new Promise<void>((resolve) => {
      if (s.process.exitCode !== null || s.process.signalCode !== null) return resolve();
      s.process.once('exit', () => resolve());
      s.process.kill('SIGKILL');
    });
  };
  const restartStore = async () => {
    if (!store) throw new Error('the store is external (MONGO_URL); it cannot be restarted here');
    store = await startStore({ dataDir: storeDir, port: storePort, database: new URL(mongoUrl).pathname.slice(1), durability });
  };
  return {
    gatewayUrl: `http://127.0.0.1:${httpPort}`,
    mongoUrl,
    redisUrl,
    env,
    metricsPorts: metricsPorts,
    procs,
    get store() {
      return store;
    },
    start,
    stop: async () => stop(),
    killStore,
    restartStore,
  };
}
