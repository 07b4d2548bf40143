/**
 * The load itself: tablets syncing and managers reading, each on a fixed schedule (open loop),
 * over Node's http with one keep-alive agent. Every request is sent at its scheduled time unless
 * its client already has `maxInFlight` requests of that route out (then it counts as offered, not
 * sent), and its latency is measured from the scheduled time. A ledger records what each tablet was
 * told about each change, for the verification after the run (store.js).
 */
const http = require('node:http');

const API = '/api/v1/ptw';
const CREATES_PER_BATCH = 8;
const EDITS_PER_BATCH = 2;
/** One batch in REPLAY_EVERY is the tablet's last answered batch sent again byte for byte. */
const REPLAY_EVERY = 8;
const PERMIT_TYPES = ['hot-work', 'electrical-isolation', 'confined-space'];
/** The cold start (first list count, first KPI snapshot, connections) is this long; a second p99 leaves it out. */
const WARM_MS = 5000;

/** Per-route figures of a run. */
class Route {
  constructor(name) {
    this.name = name;
    this.offered = 0;
    this.sent = 0;
    /** Offered but not sent: the client's in-flight cap was reached (or, for reads, no permit was known yet). */
    this.notSent = 0;
    this.served = 0;
    this.latencies = [];
    /** Latencies of the requests scheduled after the first WARM_MS (the cold start left out). */
    this.warm = [];
    this.statuses = new Map();
    this.status5xx = 0;
    /** GETs sent again after a reset on a kept-alive connection (see httpClient). */
    this.retried = 0;
  }

  record(status, ms, inRun, warm) {
    this.latencies.push(ms);
    if (warm) this.warm.push(ms);
    const key = String(status);
    this.statuses.set(key, (this.statuses.get(key) ?? 0) + 1);
    if (typeof status === 'number' && status >= 500) this.status5xx++;
    if (typeof status === 'number' && status >= 200 && status < 300 && inRun) this.served++;
  }
}

/**
 * A request function bound to `baseUrl` (loopback only): resolves `{ status, body, retried }` with
 * status a number, or `'timeout'` / `'error <code>'` (never rejects). `body` is a string, sent as JSON.
 * A GET whose kept-alive connection the server had just closed (reset on a reused socket) is sent
 * once more on a new one, as browsers do for idempotent requests; a POST never is (its answer is lost).
 */
function httpClient(baseUrl, { timeoutMs }) {
  const u = new URL(baseUrl);
  const agent = new http.Agent({ keepAlive: true, maxSockets: Infinity, maxFreeSockets: 1024 });
  const attempt = (method, path, token, body, ms) =>
    new Promise((resolve) => {
      const headers = { authorization: `Bearer ${token}`, accept: 'application/json' };
      if (body !== undefined) {
        headers['content-type'] = 'application/json';
        headers['content-length'] = Buffer.byteLength(body);
      }
      let settled = false;
      const finish = (r) => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        resolve(r);
      };
      const req = http.request({ host: u.hostname, port: u.port, method, path, headers, agent }, (res) => {
        const chunks = [];
        res.on('data', (c) => chunks.push(c));
        res.on('end', () => finish({ status: res.statusCode, body: Buffer.concat(chunks).toString('utf8') }));
        res.on('error', (err) => finish({ status: `error ${err.code ?? err.message}` }));
      });
      const timer = setTimeout(() => {
        finish({ status: 'timeout' });
        req.destroy(new Error('timeout'));
      }, ms);
      req.on('error', (err) =>
        finish({ status: `error ${err.code ?? err.message}${req.reusedSocket ? ' (reused connection)' : ''}`, stale: req.reusedSocket && ['ECONNRESET', 'EPIPE'].includes(err.code) }),
      );
      req.end(body);
    });
  const request = async (method, path, token, body) => {
    const t0 = performance.now();
    const r = await attempt(method, path, token, body, timeoutMs);
    if (!(r.stale && method === 'GET') || closed) return r;
    return { ...(await attempt(method, path, token, body, Math.max(1, timeoutMs - (performance.now() - t0)))), retried: true };
  };
  let closed = false;
  return {
    request,
    close: () => {
      closed = true;
      agent.destroy();
    },
  };
}

/**
 * What the tablets were told about every change, keyed by `<device>/<offline_id>`. A change's
 * state: `pending` (no answer yet), `applied` (an answer said applied or already_applied: final),
 * `uncertain` (the answer was lost — timeout, connection error, 5xx — or a `_retry` conflict, after
 * which the change may or may not have been written) or `refused` (an answer said conflict/rejected,
 * or the request was refused as a whole with a 4xx). Applied never changes again; uncertain only
 * becomes applied.
 */
class Ledger {
  constructor() {
    this.creates = new Map();
    this.edits = new Map();
    this.editsByPermit = new Map();
    this.problems = [];
    this.outcomes = new Map();
    this.replays = { sent: 0, unanswered: 0, checked: 0, alreadyApplied: 0, mismatches: 0 };
  }

  problem(msg) {
    if (this.problems.length < 50) this.problems.push(msg);
  }

  count(key) {
    this.outcomes.set(key, (this.outcomes.get(key) ?? 0) + 1);
  }

  addCreate(origin, project) {
    this.creates.set(origin, { origin, project, state: 'pending', serverId: undefined, why: undefined });
  }

  addEdit(key, serverId, clientVersion) {
    const e = { key, serverId, clientVersion, state: 'pending', newVersion: undefined, why: undefined };
    this.edits.set(key, e);
    const list = this.editsByPermit.get(serverId) ?? [];
    list.push(e);
    this.editsByPermit.set(serverId, list);
  }

  /** Acknowledged and uncertain edits of a permit, and the highest version an answer acknowledged. */
  editsOf(serverId) {
    const list = this.editsByPermit.get(serverId) ?? [];
    return {
      applied: list.filter((e) => e.state === 'applied').length,
      uncertain: list.filter((e) => e.state === 'uncertain' || e.state === 'pending').length,
      maxAcked: Math.max(1, ...list.filter((e) => e.state === 'applied').map((e) => e.newVersion)),
    };
  }

  /** Marks `rec` with an answer that applied nothing (`lost`: may have been applied). */
  settleNotApplied(rec, lost, why) {
    if (rec.state === 'applied') return;
    if (lost) rec.state = 'uncertain';
    else if (rec.state === 'pending') {
      rec.state = 'refused';
      rec.why = why;
    }
  }
}

/** Sorted copy's percentile (nearest rank). */
function percentile(values, p) {
  if (values.length === 0) return NaN;
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))];
}

/**
 * One run: `tablets` and `managers` clients for `seconds`, each client's rounds one second apart,
 * the clients' phases spread evenly over the second. Returns the routes, the ledger and the window.
 */
class Run {
  constructor({ client, seconds, maxInFlight, graceMs, ledger, pool }) {
    this.client = client;
    this.seconds = seconds;
    this.maxInFlight = maxInFlight;
    this.graceMs = graceMs;
    this.ledger = ledger;
    this.pool = pool;
    this.routes = { sync: new Route('sync'), list: new Route('list'), kpis: new Route('kpis'), read: new Route('read') };
    this.inFlight = new Set();
    this.timers = new Set();
    this.aborted = false;
    this.maxLagMs = 0;
  }

  /** Sends one request of `route` scheduled at `at`; `onAnswer(result)` sees every answer. */
  send(route, at, method, path, token, body, onAnswer) {
    route.sent++;
    const p = this.client.request(method, path, token, body).then((r) => {
      const now = performance.now();
      route.record(r.status, now - at, now <= this.servedUntil, at - this.start >= WARM_MS);
      if (r.retried) route.retried++;
      try {
        onAnswer?.(r);
      } catch (err) {
        this.ledger.problem(`handling an answer of ${route.name}: ${err.message}`);
      }
    });
    this.inFlight.add(p);
    p.finally(() => this.inFlight.delete(p));
    return p;
  }

  /** Calls `fire(round, at)` every second from `phaseMs` on, until the run's end, on the clock (no drift). */
  every(phaseMs, fire) {
    let round = 0;
    const next = () => {
      const at = this.start + phaseMs + round * 1000;
      if (this.aborted || at >= this.end) return;
      const timer = setTimeout(
        () => {
          this.timers.delete(timer);
          if (this.aborted) return;
          this.maxLagMs = Math.max(this.maxLagMs, performance.now() - at);
          fire(round, at);
          round++;
          next();
        },
        Math.max(0, at - performance.now()),
      );
      this.timers.add(timer);
    };
    next();
  }

  /** Runs the schedule, then waits for the answers still out (each bounded by the request timeout). */
  async go(clients) {
    this.start = performance.now() + 200;
    this.end = this.start + this.seconds * 1000;
    this.servedUntil = this.end + this.graceMs;
    clients.forEach((c, i) => this.every((i * 1000) / clients.length, (round, at) => c.fire(round, at)));
    await new Promise((resolve) => {
      this.stopWaiting = resolve;
      setTimeout(resolve, this.end - performance.now());
    });
    // A round due just before the end whose timer has not fired yet is dropped, not sent unwaited.
    for (const t of this.timers) clearTimeout(t);
    while (this.inFlight.size && !this.aborted) await Promise.race([...this.inFlight]);
    this.finished = performance.now();
  }

  abort() {
    this.aborted = true;
    this.stopWaiting?.();
    for (const t of this.timers) clearTimeout(t);
    this.client.close();
  }
}

/** A field device: its own user and device id, one sync batch per second (see the file comment). */
class Tablet {
  constructor(run, { k, user, device, token, project }) {
    Object.assign(this, { run, k, user, device, token, project });
    this.inFlight = 0;
    /** Own acknowledged permits: id → { version, busy, editedAt }. */
    this.own = new Map();
    this.history = [];
  }

  fire(round, at) {
    const route = this.run.routes.sync;
    route.offered++;
    if (this.inFlight >= this.run.maxInFlight) {
      route.notSent++;
      return;
    }
    let batch = (round + this.k) % REPLAY_EVERY === REPLAY_EVERY - 1 ? this.history.findLast((b) => !b.replayed) : undefined;
    if (batch) {
      batch.replayed = true;
      batch = { ...batch, replay: true, before: batch.changes.map((c) => this.stateOf(c)) };
      this.run.ledger.replays.sent++;
    } else batch = this.newBatch(round);
    const busy = batch.changes.filter((c) => c.op === 'update').map((c) => this.own.get(c.server_id));
    for (const p of busy) if (p) p.busy++;
    this.inFlight++;
    this.run.send(route, at, 'POST', `${API}/sync-offline-data/`, this.token, batch.body, (r) => {
      this.inFlight--;
      for (const p of busy) if (p) p.busy--;
      this.answer(batch, r);
      if (!batch.replay) this.history.push(batch);
      if (this.history.length > 4) this.history.shift();
    });
  }

  stateOf(c) {
    const rec = c.op === 'create' ? this.run.ledger.creates.get(`${this.device}/${c.offline_id}`) : this.run.ledger.edits.get(`${this.device}/${c.offline_id}`);
    return { state: rec.state, serverId: rec.serverId, newVersion: rec.newVersion };
  }

  newBatch(round) {
    const ledger = this.run.ledger;
    const changes = [];
    const now = Date.now();
    for (let i = 0; i < CREATES_PER_BATCH; i++) {
      const offline = `c${round}-${i}`;
      ledger.addCreate(`${this.device}/${offline}`, this.project);
      const n = round * CREATES_PER_BATCH + i;
      changes.push({
        entity: 'permit',
        op: 'create',
        offline_id: offline,
        data: {
          project_id: this.project,
          permit_type_id: PERMIT_TYPES[n % PERMIT_TYPES.length],
          title: `Shift start ${this.user}: job ${n}`,
          description: 'Replace the cracked support bracket; grind, weld and paint.',
          location: `Unit ${1 + ((this.k * 7 + n) % 40)}`,
          priority: ['low', 'medium', 'high'][n % 3],
          probability: 1 + (n % 5),
          severity: 1 + (n % 4),
          control_measures: 'Fire watch, extinguisher at hand, hot-work screen.',
          ppe_requirements: ['helmet', 'gloves'],
          safety_checklist: { gas_test: true, area_cleared: n % 2 === 0 },
          planned_start_time: new Date(now + 3600_000).toISOString(),
          planned_end_time: new Date(now + 9 * 3600_000).toISOString(),
        },
      });
    }
    // Edit the own permits edited least recently, never one with a change still out.
    const editable = [...this.own.entries()].filter(([, p]) => p.busy === 0).sort((a, b) => a[1].editedAt - b[1].editedAt);
    for (const [serverId, p] of editable.slice(0, EDITS_PER_BATCH)) {
      const offline = `e${round}-${changes.length}`;
      ledger.addEdit(`${this.device}/${offline}`, serverId, p.version);
      p.editedAt = round;
      changes.push({
        entity: 'permit',
        op: 'update',
        offline_id: offline,
        server_id: serverId,
        client_version: p.version,
        data: { title: `Shift start ${this.user}: revised in round ${round}`, location: `Bay ${round % 17}` },
      });
    }
    return { round, changes, body: JSON.stringify({ device_id: this.device, client_time: new Date().toISOString(), changes }) };
  }

  answer(batch, r) {
    const ledger = this.run.ledger;
    const key = (c) => `${this.device}/${c.offline_id}`;
    const recOf = (c) => (c.op === 'create' ? ledger.creates.get(key(c)) : ledger.edits.get(key(c)));
    if (r.status !== 200) {
      const lost = typeof r.status !== 'number' || r.status >= 500;
      for (const c of batch.changes) ledger.settleNotApplied(recOf(c), lost, `HTTP ${r.status}`);
      if (batch.replay) ledger.replays.unanswered++;
      return;
    }
    let body;
    try {
      body = JSON.parse(r.body);
    } catch {
      ledger.problem(`${this.device}: a sync answer is not JSON`);
      for (const c of batch.changes) ledger.settleNotApplied(recOf(c), true, 'bad answer');
      return;
    }
    const seen = new Map();
    for (const [kind, list] of [
      ['applied', body.applied],
      ['conflict', body.conflicts],
      ['rejected', body.rejected],
    ]) {
      for (const o of list ?? []) {
        if (seen.has(o.offline_id)) ledger.problem(`${this.device}/${o.offline_id}: answered twice in one batch`);
        seen.set(o.offline_id, { kind, o });
      }
    }
    if (body.summary?.total !== batch.changes.length || seen.size !== batch.changes.length) {
      ledger.problem(`${this.device}: a batch of ${batch.changes.length} changes was answered with ${seen.size} outcomes (summary total ${body.summary?.total})`);
    }
    batch.changes.forEach((c, i) => {
      const rec = recOf(c);
      const got = seen.get(c.offline_id);
      if (!got) {
        ledger.settleNotApplied(rec, true, 'no outcome');
        return;
      }
      const { kind, o } = got;
      ledger.count(`${c.op} ${kind === 'applied' ? o.status || 'applied' : `${kind}: ${o.reason}`}${batch.replay ? ' (replay)' : ''}`);
      if (batch.replay && batch.before[i].state === 'applied') {
        ledger.replays.checked++;
        const same = c.op === 'create' ? o.server_id === batch.before[i].serverId : o.new_version === batch.before[i].newVersion;
        if (kind === 'applied' && o.status === 'already_applied' && same) ledger.replays.alreadyApplied++;
        else {
          ledger.replays.mismatches++;
          ledger.problem(
            `replay of ${key(c)} (${c.op}, applied before as ${batch.before[i].serverId ?? ''} v${batch.before[i].newVersion ?? 1}) answered ${kind} ${o.status ?? o.reason} ${o.server_id ?? ''} v${o.new_version ?? ''}`,
          );
        }
      }
      if (kind === 'applied') {
        if (rec.state === 'applied' && c.op === 'create' && rec.serverId !== o.server_id) ledger.problem(`${key(c)}: acknowledged as ${rec.serverId}, later as ${o.server_id}`);
        rec.state = 'applied';
        if (c.op === 'create') {
          rec.serverId = o.server_id;
          if (!this.own.has(o.server_id)) this.own.set(o.server_id, { version: 1, busy: 0, editedAt: -1 });
          this.run.pool.add(o.server_id);
        } else {
          rec.newVersion = o.new_version;
          const p = this.own.get(c.server_id);
          if (p) p.version = Math.max(p.version, o.new_version);
        }
        return;
      }
      // A `_retry` conflict is a temporary error after which the change may have been written.
      const retry = kind === 'conflict' && o.fields && '_retry' in o.fields;
      ledger.settleNotApplied(rec, retry, `${kind}: ${o.reason}`);
      if (kind === 'conflict' && c.op === 'update' && o.server_version > 0) {
        const p = this.own.get(c.server_id);
        if (p) p.version = Math.max(p.version, o.server_version);
      }
    });
  }
}

/** A bounded set of permit ids managers may read, sampled at random. */
class Pool {
  constructor(cap = 5000) {
    this.cap = cap;
    this.ids = [];
    this.known = new Set();
  }

  add(id) {
    if (this.known.has(id)) return;
    this.known.add(id);
    if (this.ids.length < this.cap) this.ids.push(id);
    else this.ids[Math.floor(Math.random() * this.cap)] = id;
  }

  pick() {
    return this.ids.length ? this.ids[Math.floor(Math.random() * this.ids.length)] : undefined;
  }
}

/** A manager's dashboard: every second the permit list, the KPIs and one permit it knows, at once. */
class Manager {
  constructor(run, { token }) {
    this.run = run;
    this.token = token;
    this.inFlight = { list: 0, kpis: 0, read: 0 };
  }

  fire(round, at) {
    const go = (name, path, onAnswer) => {
      const route = this.run.routes[name];
      route.offered++;
      if (!path || this.inFlight[name] >= this.run.maxInFlight) {
        route.notSent++;
        return;
      }
      this.inFlight[name]++;
      this.run.send(route, at, 'GET', path, this.token, undefined, (r) => {
        this.inFlight[name]--;
        onAnswer?.(r);
      });
    };
    go('list', `${API}/permits/?page=1&page_size=20`, (r) => {
      if (r.status !== 200) return;
      try {
        for (const p of JSON.parse(r.body).results ?? []) this.run.pool.add(p.id);
      } catch {
        this.run.ledger.problem('a list answer is not JSON');
      }
    });
    go('kpis', `${API}/permits/kpis/`);
    const id = this.run.pool.pick();
    go('read', id && `${API}/permits/${id}/`);
  }
}

module.exports = { Run, Tablet, Manager, Pool, Ledger, httpClient, percentile, WARM_MS };
