/**
 * CPU seconds of the processes a load run drives, from /proc (Linux): the gateway and services
 * (one Node process each), and the store = FerretDB plus its PostgreSQL cluster. pg_ctl starts the
 * postmaster as a daemon, so it is found through its data folder (`<store dir>/pg/data/postmaster.pid`),
 * not among FerretDB's children. Backends come and go: a cluster's CPU is the postmaster's own, its
 * reaped children's (cutime/cstime) and its live children's, so a backend that exits mid-run is
 * still counted once.
 */
const fs = require('node:fs');
const path = require('node:path');
const { execFileSync } = require('node:child_process');
const { cpuSeconds } = require('../bench/proc');

let clockTicks;
function ticks() {
  clockTicks ??= Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' })) || 100;
  return clockTicks;
}

/** Fields after the command name of /proc/<pid>/stat (field 3 = index 0), or undefined once gone. */
function statFields(pid) {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  } catch {
    return undefined;
  }
}

/** Child pids of `pid`: /proc/<pid>/task/<tid>/children when the kernel has it, else a scan of /proc. */
function childrenOf(pid) {
  try {
    const kids = [];
    for (const tid of fs.readdirSync(`/proc/${pid}/task`)) {
      const text = fs.readFileSync(`/proc/${pid}/task/${tid}/children`, 'utf8').trim();
      if (text) kids.push(...text.split(/\s+/).map(Number));
    }
    return kids;
  } catch {
    const kids = [];
    for (const name of fs.readdirSync('/proc')) {
      if (!/^\d+$/.test(name)) continue;
      const f = statFields(name);
      if (f && Number(f[1]) === pid) kids.push(Number(name));
    }
    return kids;
  }
}

/**
 * CPU seconds of a process and everything it forked: its own time, its reaped children's
 * (cutime + cstime: fields 16/17 of stat) and its live children's, recursively. NaN once it is gone.
 */
function treeCpuSeconds(pid) {
  const f = statFields(pid);
  if (!f) return NaN;
  let total = (Number(f[11]) + Number(f[12]) + Number(f[13]) + Number(f[14])) / ticks();
  for (const kid of childrenOf(pid)) {
    const t = treeCpuSeconds(kid);
    if (Number.isFinite(t)) total += t;
  }
  return total;
}

/** The postmaster of the PostgreSQL cluster in `<storeDir>/pg/data`, or undefined (SQLite backend, external PostgreSQL). */
function postmasterOf(storeDir) {
  try {
    const pid = Number(fs.readFileSync(path.join(storeDir, 'pg', 'data', 'postmaster.pid'), 'utf8').split('\n')[0]);
    return statFields(pid) ? pid : undefined;
  } catch {
    return undefined;
  }
}

/** The pid of the process listening on TCP `port` (loopback or any), found through its socket's inode; undefined when none is visible. */
function pidListeningOn(port) {
  const inodes = new Set();
  for (const file of ['/proc/net/tcp', '/proc/net/tcp6']) {
    let text = '';
    try {
      text = fs.readFileSync(file, 'utf8');
    } catch {
      continue;
    }
    for (const line of text.split('\n').slice(1)) {
      const cols = line.trim().split(/\s+/);
      if (cols.length < 10 || cols[3] !== '0A') continue;
      if (parseInt(cols[1].split(':')[1], 16) === port) inodes.add(cols[9]);
    }
  }
  if (inodes.size === 0) return undefined;
  for (const name of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    let fds;
    try {
      fds = fs.readdirSync(`/proc/${name}/fd`);
    } catch {
      continue;
    }
    for (const fd of fds) {
      try {
        const m = /^socket:\[(\d+)\]$/.exec(fs.readlinkSync(`/proc/${name}/fd/${fd}`));
        if (m && inodes.has(m[1])) return Number(name);
      } catch {
        // The descriptor closed meanwhile.
      }
    }
  }
  return undefined;
}

/** A process's environment (NUL-separated /proc/<pid>/environ) as an object; {} when unreadable. */
function environOf(pid) {
  try {
    return Object.fromEntries(
      fs
        .readFileSync(`/proc/${pid}/environ`, 'utf8')
        .split('\0')
        .filter((kv) => kv.includes('='))
        .map((kv) => [kv.slice(0, kv.indexOf('=')), kv.slice(kv.indexOf('=') + 1)]),
    );
  } catch {
    return {};
  }
}

/** FerretDB's `--sqlite-dir` (the store folder, holding `pg/` on PostgreSQL) from its command line. */
function storeDirOf(pid) {
  try {
    const argv = fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0');
    const i = argv.indexOf('--sqlite-dir');
    return i >= 0 ? path.resolve(`/proc/${pid}/cwd`, argv[i + 1]) : undefined;
  } catch {
    return undefined;
  }
}

/**
 * The processes of a running system found from its ports alone (`--gateway`/`--mongo` runs): the
 * gateway listening on `gatewayPort`, the services at the addresses in its environment, the store
 * on `mongoPort` and its cluster. Missing ones are left out.
 */
function discover(gatewayPort, mongoPort) {
  const found = {};
  const gateway = pidListeningOn(gatewayPort);
  if (gateway) {
    found.gateway = gateway;
    const env = environOf(gateway);
    for (const s of ['sync', 'workflow', 'export', 'health']) {
      const addr = env[`PTW_${s.toUpperCase()}_ADDR`];
      const port = addr && Number(addr.split(':').pop());
      const pid = port && pidListeningOn(port);
      if (pid) found[s] = pid;
    }
  }
  const ferret = mongoPort ? pidListeningOn(mongoPort) : undefined;
  if (ferret) {
    found.ferretdb = ferret;
    const dir = storeDirOf(ferret);
    const pm = dir && postmasterOf(dir);
    if (pm) found.postgres = pm;
  }
  return found;
}

/**
 * Seconds the threads of `pid` (and of its live children when `tree`) have waited on a run queue
 * for a CPU (/proc/<pid>/task/<tid>/schedstat, second field): time a process was ready to run but
 * the machine was busy. Threads that have exited are not counted.
 */
function runQueueSeconds(pid, tree = false) {
  let ns = 0;
  try {
    for (const tid of fs.readdirSync(`/proc/${pid}/task`)) {
      try {
        ns += Number(fs.readFileSync(`/proc/${pid}/task/${tid}/schedstat`, 'utf8').split(' ')[1]);
      } catch {
        // The thread exited meanwhile.
      }
    }
  } catch {
    return NaN;
  }
  let total = ns / 1e9;
  if (tree) for (const kid of childrenOf(pid)) total += runQueueSeconds(kid) || 0;
  return total;
}

/**
 * One reading of every measured process: `{ cpu: { name: seconds }, wait: { name: seconds } }`.
 * `pids` maps names to pids; `postgres` is read as a tree (postmaster, reaped and live backends),
 * every other one as a single process; `generator` is this process.
 */
function readCpu(pids) {
  const cpu = {};
  const wait = {};
  for (const [name, pid] of Object.entries(pids)) {
    cpu[name] = name === 'postgres' ? treeCpuSeconds(pid) : cpuSeconds(pid);
    wait[name] = runQueueSeconds(pid, name === 'postgres');
  }
  const self = process.cpuUsage();
  cpu.generator = (self.user + self.system) / 1e6;
  wait.generator = runQueueSeconds(process.pid);
  return { cpu, wait };
}

module.exports = { postmasterOf, discover, readCpu };
