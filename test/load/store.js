/**
 * What the load test writes and reads in the store directly (raw MongoDB driver): the permits of a
 * site as the services would have written them, and the check after a run that every acknowledged
 * offline create is stored exactly once with the version its acknowledged edits give it.
 */
const path = require('node:path');
const { permitDocs, insertChunked, placePermits } = require('../bench/store-backends');

const root = path.resolve(__dirname, '..', '..');
const { Types } = require(require.resolve('mongoose', { paths: [path.join(root, 'libs/db')] }));
const ISOLATING_TYPES = new Set(['electrical-isolation', 'confined-space']);
/** Projects p1…p20 as the bench seeds them (a quarter of the permits in p1). */
const PROJECTS = Array.from({ length: 20 }, (_, i) => `p${i + 1}`);

const utcDay = (d) => new Date(d).toISOString().slice(0, 10);

/**
 * `n` permits as the services store them: test/bench's mix of projects, types and statuses, with
 * `created_at` over the past year (`spread` = year) or all since today's UTC midnight (`today`),
 * `updated_at` and the workflow stamps after it (never in the future),
 * and permit numbers PTW-<year>-NNNNNN in order of creation per year after `numbered` (year → last
 * number already given; the counters are set to match, so the services' next numbers follow them).
 */
function sitePermits(n, spread, now = Date.now(), numbered = new Map()) {
  const docs = permitDocs(n, { now, tag: 'load' });
  if (spread === 'today') {
    const midnight = Date.parse(`${utcDay(now)}T00:00:00.000Z`);
    const span = Math.max(1, now - 60_000 - midnight);
    docs.forEach((d, i) => {
      const created = midnight + Math.floor(((i * 7919) % n) * (span / n));
      const at = (f) => new Date(created + Math.floor(f * (now - created)));
      d.created_at = new Date(created);
      d.updated_at = at(0.8);
      if (d.submitted_at) d.submitted_at = at(0.2);
      if (d.verified_at) d.verified_at = at(0.4);
      if (d.approved_at) d.approved_at = at(0.6);
    });
  }
  const perYear = new Map(numbered);
  for (const d of [...docs].sort((a, b) => a.created_at - b.created_at)) {
    const year = d.created_at.getUTCFullYear();
    const seq = (perYear.get(year) ?? 0) + 1;
    perYear.set(year, seq);
    d.permit_number = `PTW-${year}-${String(seq).padStart(6, '0')}`;
  }
  return { docs, counters: [...perYear].filter(([year]) => docs.some((d) => d.created_at.getUTCFullYear() === year)).map(([year, seq]) => ({ _id: `permit_number:${year}`, seq })) };
}

/**
 * One required isolation point per permit of an isolating type past draft, in the state its
 * permit's status implies (KPIs count the `isolated` ones).
 */
function isolationPoints(permits) {
  const stateOf = {
    submitted: 'assigned',
    under_review: 'isolated',
    approved: 'verified',
    active: 'verified',
    suspended: 'verified',
    completed: 'deisolated',
    expired: 'verified',
    rejected: 'assigned',
    cancelled: 'assigned',
  };
  return permits
    .filter((p) => ISOLATING_TYPES.has(p.permit_type_id) && stateOf[p.status])
    .map((p, i) => {
      const status = stateOf[p.status];
      const at = p.submitted_at ?? p.created_at;
      const doc = {
        permit_id: String(p._id),
        project_id: p.project_id,
        name: `Breaker MCC-${1 + (i % 40)}`,
        energy_type: p.permit_type_id === 'confined-space' ? 'mechanical' : 'electrical',
        required: true,
        status,
        lock_ids: status === 'assigned' ? [] : [`L-${i}`],
        notes: '',
        version: 1 + ['assigned', 'isolated', 'verified', 'deisolated'].indexOf(status),
      };
      if (status !== 'assigned') Object.assign(doc, { isolated_by: p.created_by, isolated_at: at });
      if (status === 'verified' || status === 'deisolated') Object.assign(doc, { verified_by: 'u-supervisor', verified_at: p.verified_at ?? at });
      if (status === 'deisolated') Object.assign(doc, { deisolated_by: p.created_by, deisolated_at: p.actual_end_time ?? at });
      return doc;
    });
}

/**
 * Seeds a site: `n` permits (see {@link sitePermits}), their isolation points, the permit-number
 * counters, projects p1…p20 and the load's users. Returns what the run needs, among it a sample of
 * the ids of permits in the projects `readableBy` (the managers').
 */
async function seedSite(db, { permits, spread, users, readableBy }) {
  const now = Date.now();
  const t0 = Date.now();
  // Numbers continue the store's own counters (a running system may have numbered permits already).
  const numbered = new Map();
  for (const c of await db
    .collection('counters')
    .find({ _id: { $regex: '^permit_number:' } })
    .toArray())
    numbered.set(Number(c._id.split(':')[1]), c.seq ?? 0);
  const { docs, counters } = sitePermits(permits, spread, now, numbered);
  // created_day: what checkouts before the registration order (LOAD_CODE_ROOT) list by; ignored since.
  for (const d of docs) d.created_day = utcDay(d.created_at);
  if (docs.length) await insertChunked(db.collection('permits'), await placePermits(db.collection('permits'), docs));
  const points = isolationPoints(docs);
  if (points.length) await insertChunked(db.collection('isolation_points'), points);
  const upsert = (name, rows) => (rows.length ? db.collection(name).bulkWrite(rows.map((r) => ({ updateOne: { filter: { _id: r._id }, update: { $set: r }, upsert: true } }))) : undefined);
  // The counters only ever grow: a store that already numbered more keeps its figure.
  for (const c of counters) await db.collection('counters').updateOne({ _id: c._id }, { $max: { seq: c.seq } }, { upsert: true });
  await upsert(
    'projects',
    PROJECTS.map((id) => ({ _id: id, name: `Load site ${id}` })).filter((p) => !['p1', 'p2'].includes(p._id)),
  );
  await upsert('users', users);
  // Derived figures a running system may hold: a project's saved list count covers closed days, which
  // the services never add permits to but this seed does; the KPI snapshots would be up to 10 s old.
  if (docs.length) {
    await db.collection('list_counts').deleteMany({ _id: { $in: PROJECTS } });
    await db.collection('kpi_snapshots').deleteMany({});
  }
  const readable = docs.filter((d) => readableBy.includes(d.project_id));
  return {
    seconds: (Date.now() - t0) / 1000,
    isolationPoints: points.length,
    sampleIds: readable.filter((_, i) => i % Math.max(1, Math.floor(readable.length / 500)) === 0).map((d) => String(d._id)),
  };
}

/** A user document as the services' seed writes them. */
const userDoc = (id, role, projects) => ({ _id: id, name: `Load ${id}`, email: `${id}@load.example.test`, role, project_ids: projects });

/**
 * Checks the store against what the tablets were told (see the Tablet ledger in traffic.js):
 *   - every acknowledged create is stored exactly once under its sync origin `<device>/<offline>`,
 *     with the acknowledged id, in its project, at a version in [1 + acknowledged edits,
 *     1 + acknowledged + uncertain edits]; a sample is also read back by _id;
 *   - an uncertain create (answer lost) is stored at most once; a refused one never;
 *   - no sync origin is stored twice, and the run's devices stored nothing they did not send.
 * Returns `{ failures: [...], figures: {...} }`.
 */
async function verifyStore(db, ledger, devicePrefix) {
  const failures = [];
  const fail = (msg) => failures.length < 50 && failures.push(msg);
  const permits = db.collection('permits');
  const byOrigin = new Map();
  const byId = new Map();
  const cursor = permits.find({ sync_origin: { $exists: true } }, { projection: { _id: 1, sync_origin: 1, version: 1, project_id: 1 }, batchSize: 5000 });
  for await (const p of cursor) {
    const list = byOrigin.get(p.sync_origin) ?? [];
    list.push(p);
    byOrigin.set(p.sync_origin, list);
    byId.set(String(p._id), p);
  }
  let doubled = 0;
  for (const [origin, list] of byOrigin) {
    if (list.length > 1) {
      doubled++;
      fail(`sync origin ${origin} is stored ${list.length} times (${list.map((p) => p._id).join(', ')})`);
    }
  }
  const figures = { ackedCreates: 0, uncertainCreates: 0, uncertainLanded: 0, refusedCreates: 0, ackedEdits: 0, uncertainEdits: 0, permitsChecked: 0, doubled, readBack: 0 };
  const sent = new Set();
  for (const c of ledger.creates.values()) {
    sent.add(c.origin);
    const stored = byOrigin.get(c.origin) ?? [];
    if (c.state === 'applied') {
      figures.ackedCreates++;
      if (stored.length !== 1) {
        fail(`acknowledged create ${c.origin} (id ${c.serverId}) is stored ${stored.length} times`);
        continue;
      }
      const p = stored[0];
      if (String(p._id) !== c.serverId) fail(`acknowledged create ${c.origin}: acknowledged id ${c.serverId}, stored id ${p._id}`);
      if (p.project_id !== c.project) fail(`acknowledged create ${c.origin}: project ${p.project_id}, sent ${c.project}`);
      const edits = ledger.editsOf(c.serverId);
      figures.ackedEdits += edits.applied;
      figures.uncertainEdits += edits.uncertain;
      const lo = 1 + edits.applied;
      const hi = lo + edits.uncertain;
      figures.permitsChecked++;
      if (!(p.version >= lo && p.version <= hi)) {
        fail(
          `permit ${c.serverId} (${c.origin}) is at version ${p.version}, its acknowledged edits give ${lo === hi ? lo : `${lo}…${hi}`} (${edits.applied} acknowledged, ${edits.uncertain} uncertain)`,
        );
      }
      if (edits.maxAcked > p.version) fail(`permit ${c.serverId}: an answer acknowledged version ${edits.maxAcked}, the store has ${p.version}`);
    } else if (c.state === 'uncertain') {
      figures.uncertainCreates++;
      if (stored.length === 1) figures.uncertainLanded++;
    } else {
      figures.refusedCreates++;
      if (stored.length) fail(`create ${c.origin} was answered as not applied (${c.why}) but is stored`);
    }
  }
  for (const origin of byOrigin.keys()) {
    if (origin.startsWith(devicePrefix) && !sent.has(origin)) fail(`stored permit with sync origin ${origin}, which this run never sent`);
  }
  // Read a sample back by _id, as a client holding only the acknowledged id would.
  const acked = [...ledger.creates.values()].filter((c) => c.state === 'applied');
  const step = Math.max(1, Math.floor(acked.length / 100));
  for (let i = 0; i < acked.length; i += step) {
    const c = acked[i];
    const p = await permits.findOne({ _id: byId.get(c.serverId)?._id ?? new Types.ObjectId(c.serverId) }, { projection: { sync_origin: 1 } });
    figures.readBack++;
    if (!p || p.sync_origin !== c.origin) fail(`permit ${c.serverId} does not read back by _id (${p ? `origin ${p.sync_origin}` : 'not found'})`);
  }
  return { failures, figures };
}

module.exports = { seedSite, verifyStore, userDoc, PROJECTS };
