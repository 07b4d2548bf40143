/**
 * A private PostgreSQL cluster for the local store's PostgreSQL backend: one cluster per store data
 * folder, socket-only (no TCP port to collide with), started and stopped with the store.
 */
import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

export interface PrivateCluster {
  /** postgres:// URL of the cluster's `postgres` database over its Unix socket. */
  url: string;
  /** The cluster's folder (data, log, socket). */
  dir: string;
  /** The settings this start runs with (see SETTINGS). */
  durability: StoreDurability;
  stop(): Promise<void>;
}

/**
 * How the cluster trades safety for speed, chosen per start (`-c` options: a folder can be started
 * either way, whatever it ran with before).
 * - `durable` (`make up`): fsync and full-page images on, so neither a crash of the store's processes
 *   nor one of the machine (power cut, kernel panic) can corrupt the cluster. Commits are
 *   asynchronous: a crash loses at most the commits of the last moment (up to 3 × wal_writer_delay,
 *   200 ms by default) that had already been acknowledged, never the database.
 * - `fast` (tests, benches: throwaway folders): no fsync, no full-page images. A crash of the store's
 *   processes loses the same last moment at most (the kernel keeps what was written); a crash of the
 *   machine can corrupt the cluster, which is then deleted and made again.
 */
export type StoreDurability = 'durable' | 'fast';

const SETTINGS: Record<StoreDurability, string[]> = {
  durable: ['fsync=on', 'full_page_writes=on', 'synchronous_commit=off'],
  fast: ['fsync=off', 'full_page_writes=off', 'synchronous_commit=off'],
};
const COMMON_SETTINGS = ['shared_buffers=128MB', 'plan_cache_mode=force_custom_plan'];

/** `<cluster dir>/durability` says what the last start ran with; no file: made before it existed (fast). */
const DURABILITY_FILE = 'durability';

/**
 * FerretDB 1.24 pushes a filter's top-level equality down as JSONB containment with the field name
 * as a parameter (`WHERE _jsonb->$1 @> $2`), but builds the collection's indexes as btree
 * expression indexes (`(_jsonb->'field')`), which containment cannot use: every pushed-down query,
 * even one by `_id`, scans the whole table. This event trigger gives the equality fields of every
 * btree index FerretDB creates one GIN index (jsonb_path_ops: containment only, the smallest; no
 * pending list, so a read right after a bulk insert does not scan one) on the same expressions,
 * which containment does use. The equality fields are all the fields of a unique or single-field
 * index (a unique key is looked up whole: a permit's place is `project_id` + `list_seq`) and all but
 * the last field of another compound one (the last is the sort or range key in this codebase's
 * indexes, which FerretDB never pushes down): each index costs every write, so none is made that no
 * query can use. Several equality fields make one multi-column GIN, not one GIN each: PostgreSQL
 * has no statistics on a table it has not analysed yet (a new or fast-growing collection), and
 * then ANDs one GIN scan per field, reading a project's every entry to find one place (0.9 ms a
 * probe, against 0.14 ms with the two fields in one index, at 7,000 permits in the project).
 * The parameterised field name only matches the index expression in a custom plan, hence
 * `plan_cache_mode = force_custom_plan` in COMMON_SETTINGS. FerretDB does not know these indexes
 * (`getIndexes` does not list them); dropping its index leaves them in place.
 * A non-unique btree of FerretDB's serves none of its queries either, yet every write maintained it
 * (13 on permits: a 20,000-permit insert 3.6–3.9 s with them, 1.5 s without): the trigger makes it
 * again with `WHERE false`, same name and columns, so FerretDB's metadata stays true (it lists and
 * drops it) and no write touches it. Unique ones stay whole: they enforce.
 * Installed at every start; the DO block gives indexes made before it (an older store folder) theirs,
 * and drops the mirrors an earlier rule made that this one does not.
 */
const MIRROR_INDEXES_SQL = `
CREATE OR REPLACE FUNCTION ptw_mirror_of(idx oid, OUT tbl oid, OUT name text, OUT cols text) LANGUAGE plpgsql AS $fn$
DECLARE
  ncols int;
  uniq bool;
  expr text;
  exprs text[] := ARRAY[]::text[];
BEGIN
  SELECT i.indrelid, i.indnatts, i.indisunique INTO tbl, ncols, uniq
    FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid JOIN pg_am am ON am.oid = c.relam
    WHERE i.indexrelid = idx AND am.amname = 'btree';
  IF tbl IS NULL THEN
    RETURN;
  END IF;
  FOR k IN 1..(CASE WHEN uniq OR ncols = 1 THEN ncols ELSE ncols - 1 END) LOOP
    expr := pg_get_indexdef(idx, k, false);
    IF expr ~ '^[(]*_jsonb -> ''[^'']+''::text[)]*$' THEN
      exprs := exprs || expr;
    END IF;
  END LOOP;
  IF cardinality(exprs) = 0 THEN
    tbl := NULL;
    RETURN;
  END IF;
  name := 'ptw_gin_' || md5(tbl::text || array_to_string(exprs, ','));
  SELECT string_agg(format('(%s) jsonb_path_ops', e), ', ') INTO cols FROM unnest(exprs) e;
END $fn$;

-- The mirror of btree index idx, made if missing; returns its name (NULL: nothing to mirror).
-- (ptw_mirror_btree_index was its name while it returned nothing.)
DROP FUNCTION IF EXISTS ptw_mirror_btree_index(oid);
CREATE OR REPLACE FUNCTION ptw_mirror_index(idx oid) RETURNS text LANGUAGE plpgsql AS $fn$
DECLARE
  m record;
  mirror text;
  def text;
BEGIN
  SELECT * INTO m FROM ptw_mirror_of(idx);
  mirror := m.name;
  IF m.tbl IS NOT NULL THEN
    EXECUTE format('CREATE INDEX IF NOT EXISTS %I ON %s USING gin (%s) WITH (fastupdate = off)', m.name, m.tbl::regclass, m.cols);
  END IF;
  -- A btree FerretDB made that enforces nothing (not unique) serves none of its queries: made again
  -- empty (WHERE false), so writes stop maintaining it. The nested CREATE INDEX comes back here
  -- and, partial, is left alone.
  SELECT pg_get_indexdef(i.indexrelid) INTO def
    FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid JOIN pg_am am ON am.oid = c.relam
    WHERE i.indexrelid = idx AND am.amname = 'btree' AND NOT i.indisunique AND i.indpred IS NULL
      AND c.relname NOT LIKE 'ptw_%' AND c.relname NOT LIKE 'pg_%';
  IF def IS NOT NULL THEN
    EXECUTE format('DROP INDEX %s', idx::regclass);
    EXECUTE def || ' WHERE false';
  END IF;
  RETURN mirror;
EXCEPTION WHEN OTHERS THEN
  -- Never fail FerretDB's own statement: without the mirror a query is slower, not wrong.
  RAISE WARNING 'ptw_mirror_index(%): %', idx, SQLERRM;
  RETURN mirror;
END $fn$;

CREATE OR REPLACE FUNCTION ptw_mirror_new_index() RETURNS event_trigger LANGUAGE plpgsql AS $fn$
DECLARE
  cmd record;
BEGIN
  FOR cmd IN SELECT objid FROM pg_event_trigger_ddl_commands() WHERE command_tag = 'CREATE INDEX' LOOP
    PERFORM ptw_mirror_index(cmd.objid);
  END LOOP;
END $fn$;

DROP EVENT TRIGGER IF EXISTS ptw_mirror_indexes;
CREATE EVENT TRIGGER ptw_mirror_indexes ON ddl_command_end WHEN TAG IN ('CREATE INDEX') EXECUTE FUNCTION ptw_mirror_new_index();

DO $do$
DECLARE
  r record;
  mirror text;
  wanted text[] := ARRAY[]::text[];
BEGIN
  FOR r IN SELECT indexrelid FROM pg_index i JOIN pg_class t ON t.oid = i.indrelid JOIN pg_namespace n ON n.oid = t.relnamespace
           WHERE n.nspname NOT IN ('pg_catalog', 'information_schema', 'pg_toast') LOOP
    mirror := ptw_mirror_index(r.indexrelid);
    IF mirror IS NOT NULL THEN
      wanted := wanted || mirror;
    END IF;
  END LOOP;
  FOR r IN SELECT format('%I.%I', n.nspname, c.relname) AS idx FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
           WHERE c.relkind = 'i' AND c.relname LIKE 'ptw_gin_%' AND NOT (c.relname = ANY (wanted)) LOOP
    EXECUTE 'DROP INDEX ' || r.idx;
  END LOOP;
END $do$;
`;

/** Unix socket paths are limited to 107 bytes (sun_path); the socket file is `.s.PGSQL.5432`. */
const MAX_SOCKET_DIR = 100 - '/.s.PGSQL.5432'.length;

/**
 * The folder holding `initdb` and `pg_ctl`: the one of `initdb` on the PATH, else the newest
 * /usr/lib/postgresql/<version>/bin (Debian installs them off the PATH).
 */
export function postgresBinDir(): string {
  for (const dir of (process.env.PATH ?? '').split(path.delimiter)) {
    const candidate = path.join(dir, 'initdb');
    if (dir && isExecutable(candidate)) return path.dirname(fs.realpathSync(candidate));
  }
  const base = '/usr/lib/postgresql';
  const versions = fs.existsSync(base)
    ? fs
        .readdirSync(base)
        .filter((v) => isExecutable(path.join(base, v, 'bin', 'initdb')))
        .sort((a, b) => Number(b) - Number(a))
    : [];
  if (versions.length === 0) {
    throw new Error('PostgreSQL is not installed (no initdb on the PATH or in /usr/lib/postgresql/*/bin): run `make sysdeps`, or set PTW_STORE_BACKEND=sqlite');
  }
  return path.join(base, versions[0], 'bin');
}

function isExecutable(file: string): boolean {
  try {
    fs.accessSync(file, fs.constants.X_OK);
    return fs.statSync(file).isFile();
  } catch {
    return false;
  }
}

/** PostgreSQL refuses to run as root: as root, its commands run as the `postgres` user. */
function serverUser(): { uid: number; gid: number } | undefined {
  if (process.getuid?.() !== 0) return undefined;
  const id = (flag: string) => spawnSync('id', [flag, 'postgres'], { encoding: 'utf8' });
  const uid = id('-u');
  const gid = id('-g');
  if (uid.status !== 0 || gid.status !== 0) {
    throw new Error("running as root, PostgreSQL needs the `postgres` user (Debian's postgresql package creates it), or set PTW_STORE_BACKEND=sqlite");
  }
  return { uid: Number(uid.stdout.trim()), gid: Number(gid.stdout.trim()) };
}

function run(bin: string, args: string[], asPostgres: boolean): Promise<{ code: number | null; output: string }> {
  const [cmd, argv] = asPostgres ? ['runuser', ['-u', 'postgres', '--', bin, ...args]] : [bin, args];
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, argv, { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, LC_ALL: 'C' } });
    let output = '';
    const collect = (d: Buffer) => {
      output = (output + d.toString()).slice(-4000);
    };
    child.stdout.on('data', collect);
    child.stderr.on('data', collect);
    child.once('error', reject);
    child.once('close', (code) => resolve({ code, output }));
  });
}

/** The server user must be able to walk down to the cluster: add search permission (not read) where it lacks. */
function allowTraversal(dir: string): void {
  for (let d = path.resolve(dir); ; d = path.dirname(d)) {
    const mode = fs.statSync(d).mode;
    if ((mode & 0o001) === 0) fs.chmodSync(d, (mode & 0o7777) | 0o001);
    if (path.dirname(d) === d) return;
  }
}

/**
 * Starts the cluster in `<parent>/pg`, initialising it on first use and reusing it afterwards.
 * A server still running there (left by a store that was killed) is restarted, so the socket and
 * settings are always this start's; a server that crashed recovers from its WAL as it starts.
 * `durability` (default `durable`) picks the settings (StoreDurability). Resolves once it accepts
 * connections; stop() shuts it down (fast mode: open sessions are ended).
 */
export async function startPrivateCluster(parent: string, opts: { durability?: StoreDurability } = {}): Promise<PrivateCluster> {
  const durability = opts.durability ?? 'durable';
  const bin = postgresBinDir();
  const user = serverUser();
  const dir = path.join(path.resolve(parent), 'pg');
  const data = path.join(dir, 'data');
  fs.mkdirSync(dir, { recursive: true });
  let socketDir = dir;
  let ownSocketDir = false;
  if (dir.length > MAX_SOCKET_DIR) {
    socketDir = fs.mkdtempSync(path.join(os.tmpdir(), 'ptw-pg-'));
    ownSocketDir = true;
  }
  const cleanupSocketDir = () => {
    if (ownSocketDir) fs.rmSync(socketDir, { recursive: true, force: true });
  };
  if (user) {
    allowTraversal(dir);
    fs.chownSync(dir, user.uid, user.gid);
    if (ownSocketDir) {
      allowTraversal(socketDir);
      fs.chownSync(socketDir, user.uid, user.gid);
    }
  }
  const pg = (tool: string, args: string[]) => run(path.join(bin, tool), args, user !== undefined);
  try {
    const modeFile = path.join(dir, DURABILITY_FILE);
    if (!fs.existsSync(path.join(data, 'PG_VERSION'))) {
      // A fast cluster is not worth syncing (a power cut can corrupt it anyway); a durable one is.
      const sync = durability === 'fast' ? ['--no-sync'] : [];
      const init = await pg('initdb', ['-D', data, '--auth=trust', '-U', 'postgres', '-E', 'UTF8', '--locale=C', ...sync, '--no-instructions']);
      if (init.code !== 0) throw new Error(`initdb failed in ${data}: ${init.output.trim()}`);
      fs.writeFileSync(modeFile, durability);
    }
    if ((await pg('pg_ctl', ['status', '-D', data])).code === 0) await pg('pg_ctl', ['stop', '-D', data, '-m', 'fast', '-w']);
    const previous = fs.existsSync(modeFile) ? fs.readFileSync(modeFile, 'utf8').trim() : 'fast';
    if (durability === 'durable' && previous !== 'durable') {
      // What a fast start wrote may still sit in the kernel's cache only: fsync the whole cluster
      // once (~1–3 s) so that a power cut cannot take it; from here on the durable settings keep it.
      const synced = await pg('initdb', ['--sync-only', '-D', data]);
      if (synced.code !== 0) throw new Error(`could not sync ${data} to disk: ${synced.output.trim()}`);
    }
    if (previous !== durability) fs.writeFileSync(modeFile, durability);
    const settings = [...SETTINGS[durability], ...COMMON_SETTINGS];
    const options = [`-c listen_addresses=''`, `-c unix_socket_directories='${socketDir}'`, ...settings.map((s) => `-c ${s}`)].join(' ');
    const log = path.join(dir, 'postgresql.log');
    const started = await pg('pg_ctl', ['start', '-D', data, '-l', log, '-w', '-t', '60', '-o', options]);
    if (started.code !== 0) {
      const tail = fs.existsSync(log) ? fs.readFileSync(log, 'utf8').slice(-2000) : '';
      throw new Error(`PostgreSQL did not start in ${data}: ${started.output.trim()}\n${tail}`);
    }
    const mirror = await pg('psql', ['-h', socketDir, '-U', 'postgres', '-d', 'postgres', '-X', '-q', '-v', 'ON_ERROR_STOP=1', '-c', MIRROR_INDEXES_SQL]);
    if (mirror.code !== 0) throw new Error(`could not install the index mirror in ${data}: ${mirror.output.trim()}`);
  } catch (err) {
    await pg('pg_ctl', ['stop', '-D', data, '-m', 'immediate', '-w']).catch(() => undefined);
    cleanupSocketDir();
    throw err;
  }
  let stopped: Promise<void> | undefined;
  return {
    url: `postgres://postgres@/postgres?host=${encodeURIComponent(socketDir)}`,
    dir,
    durability,
    stop: () => {
      stopped ??= (async () => {
        const r = await pg('pg_ctl', ['stop', '-D', data, '-m', 'fast', '-w', '-t', '60']);
        cleanupSocketDir();
        if (r.code !== 0 && (await pg('pg_ctl', ['status', '-D', data])).code === 0) {
          throw new Error(`PostgreSQL in ${data} did not stop: ${r.output.trim()}`);
        }
      })();
      return stopped;
    },
  };
}
