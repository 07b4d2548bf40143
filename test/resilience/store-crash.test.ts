/**
 * The local store's PostgreSQL crashes under write load: every process of the private cluster
 * (postmaster and backends) is SIGKILLed at once, then FerretDB, which cannot go on without it. The
 * system is started again on the same folder (PostgreSQL recovers from its WAL) and every permit
 * whose sync was acknowledged more than 1 s before the kill must be there. Commits are asynchronous
 * (synchronous_commit=off), so the acknowledgements of the last moment (up to 3 × wal_writer_delay
 * = 600 ms) may be lost: the test prints how many were. A SIGKILL tests what the server had handed
 * to the kernel, not what fsync put on disk (only an OS crash tells those apart): the durable
 * settings themselves are checked on the running cluster.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { MongoClient, ObjectId } from 'mongodb';
import { DEV_JWT_SECRET } from '@ptw/common';
import { postgresBinDir } from '../../libs/devstore/src/postgres';
import { REPO_ROOT, startStack, type Stack } from '../../libs/devstore/src/stack';
import { token } from '../support/stack';

jest.setTimeout(90_000);

const LOAD_MS = 4000;
const CLIENTS = 3;
const BATCH = 10;
const MARGIN_MS = 1000;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const ownCluster = !process.env.MONGO_URL && !process.env.PTW_STORE_POSTGRESQL_URL && (process.env.PTW_STORE_BACKEND ?? 'postgresql') === 'postgresql';

let stack: Stack | undefined;
let logDir: string;

/** The processes whose parent is `pid` (PostgreSQL's backends and helpers are the postmaster's children). */
function childrenOf(pid: number): number[] {
  return fs
    .readdirSync('/proc')
    .filter((p) => /^\d+$/.test(p))
    .filter((p) => {
      try {
        // /proc/<pid>/stat: "pid (comm) state ppid …"; comm may hold spaces, so split after its ")".
        return Number(fs.readFileSync(`/proc/${p}/stat`, 'utf8').split(') ')[1].split(' ')[1]) === pid;
      } catch {
        return false;
      }
    })
    .map(Number);
}

/** True once `pid` is gone: a zombie still counts (pg_ctl would see it as a running server). */
async function reaped(pid: number, timeoutMs = 10_000): Promise<boolean> {
  const until = Date.now() + timeoutMs;
  while (Date.now() < until) {
    if (!fs.existsSync(`/proc/${pid}`)) return true;
    await sleep(100);
  }
  return false;
}

function psql(url: string, sql: string): string {
  const cmd = [path.join(postgresBinDir(), 'psql'), url, '-X', '-At', '-c', sql];
  const out = process.getuid?.() === 0 ? execFileSync('runuser', ['-u', 'postgres', '--', ...cmd], { encoding: 'utf8' }) : execFileSync(cmd[0], cmd.slice(1), { encoding: 'utf8' });
  return out.trim();
}

beforeAll(async () => {
  if (!ownCluster) return;
  logDir = fs.mkdtempSync(path.join(os.tmpdir(), 'ptw-store-crash-'));
  stack = await startStack({
    ports: 'free',
    logDir,
    durability: 'durable',
    env: {
      PTW_JWT_SECRET: DEV_JWT_SECRET,
      NODE_ENV: 'test',
      LOG_LEVEL: 'warn',
      PTW_THROTTLE_SYNC: '1000000/min',
      PTW_THROTTLE_KEY_PREFIX: `ptw-test:store-crash:${process.pid}:${Date.now()}`,
    },
  });
  const seed = spawnSync(process.execPath, [path.join(REPO_ROOT, 'services/workflow/dist/seed.js')], { env: stack.env, encoding: 'utf8' });
  if (seed.status !== 0) throw new Error(`seed failed: ${seed.stderr}`);
});

afterAll(async () => {
  await stack?.stop();
  if (logDir) fs.rmSync(logDir, { recursive: true, force: true });
});

(ownCluster ? it : it.skip)(
  "when the durable store's PostgreSQL is SIGKILLed under sync load and started again on its folder, then every create acknowledged more than 1 s before the kill is there",
  async () => {
    const s = stack!;
    const cluster = s.store?.cluster;
    expect(cluster?.durability).toBe('durable');
    expect(psql(cluster!.url, "SELECT current_setting('fsync') || ' ' || current_setting('full_page_writes')")).toBe('on on');

    const worker = await token('u-crash-worker', 'worker', ['p1']);
    const acked: { id: string; at: number }[] = [];
    let failed = 0;
    let stop = false;
    let n = 0;
    const client = async (device: string) => {
      while (!stop) {
        const changes = Array.from({ length: BATCH }, () => ({ entity: 'permit', op: 'create', offline_id: `${device}-${++n}`, data: { permit_type_id: 'hot-work', title: `crash ${n}` } }));
        try {
          const res = await fetch(`${s.gatewayUrl}/api/v1/ptw/sync-offline-data/`, {
            method: 'POST',
            headers: { authorization: `Bearer ${worker}`, 'content-type': 'application/json' },
            body: JSON.stringify({ device_id: device, changes }),
            signal: AbortSignal.timeout(10_000),
          });
          const body = (await res.json()) as { applied?: { server_id: string; status?: string }[] };
          const at = Date.now();
          if (res.status !== 200) failed++;
          for (const a of body.applied ?? []) if (a.status !== 'already_applied') acked.push({ id: a.server_id, at });
        } catch {
          failed++;
          await sleep(50);
        }
      }
    };
    const loops = Array.from({ length: CLIENTS }, (_, i) => client(`crash-dev-${i}`));
    await sleep(LOAD_MS);

    // The crash: every process of the cluster at once, then FerretDB (it cannot go on without it).
    const pidFile = path.join(cluster!.dir, 'data', 'postmaster.pid');
    const postmaster = Number(fs.readFileSync(pidFile, 'utf8').split('\n')[0]);
    const victims = [postmaster, ...childrenOf(postmaster)];
    const killedAt = Date.now();
    for (const pid of victims) process.kill(pid, 'SIGKILL');
    await s.killStore();
    stop = true;
    await Promise.all(loops);
    for (const pid of victims) expect(await reaped(pid)).toBe(true);
    expect(fs.existsSync(pidFile)).toBe(true); // it died: nothing removed its pid file

    const restartT0 = Date.now();
    await s.restartStore();
    const restartMs = Date.now() - restartT0;
    const pgLog = fs.readFileSync(path.join(cluster!.dir, 'postgresql.log'), 'utf8');
    expect(pgLog).toMatch(/not properly shut down; automatic recovery in progress/);

    const driver = await MongoClient.connect(s.mongoUrl, { serverSelectionTimeoutMS: 10_000 });
    const found = new Set<string>();
    try {
      const permits = driver.db().collection('permits');
      for (let i = 0; i < acked.length; i += 200) {
        const ids = acked.slice(i, i + 200).map((a) => new ObjectId(a.id));
        for (const d of await permits.find({ _id: { $in: ids } }, { projection: { _id: 1 } }).toArray()) found.add(String(d._id));
      }
    } finally {
      await driver.close();
    }
    const old = acked.filter((a) => a.at < killedAt - MARGIN_MS);
    const recent = acked.filter((a) => a.at >= killedAt - MARGIN_MS);
    const lostOld = old.filter((a) => !found.has(a.id));
    const lostRecent = recent.filter((a) => !found.has(a.id));
    const lastAck = acked.reduce((m, a) => Math.max(m, a.at), 0);
    process.stdout.write(
      `store-crash: ${acked.length} creates acknowledged in ${LOAD_MS} ms by ${CLIENTS} clients (${failed} failed requests, around the kill); ` +
        `killed ${victims.length} PostgreSQL processes (last ack ${lastAck - killedAt} ms from the kill); restart with recovery ${restartMs} ms; ` +
        `acked > ${MARGIN_MS} ms before the kill: ${old.length}, lost ${lostOld.length}; acked in the last ${MARGIN_MS} ms: ${recent.length}, lost ${lostRecent.length}\n`,
    );
    expect(old.length).toBeGreaterThan(0);
    expect(lostOld.map((a) => a.id)).toEqual([]);
  },
);
