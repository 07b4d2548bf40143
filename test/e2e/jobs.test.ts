/**
 * The workflow jobs run by several real worker processes (`services/workflow/dist/jobs/worker.js`)
 * on one store with a 2-second schedule: two workers, then three. Every scheduled slot of every job
 * is executed once (counted from `job_runs`), every permit is expired once and no notification
 * exists twice — on FerretDB, whose non-atomic findAndModify lets several workers lock the same
 * Agenda job, as on MongoDB.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import mongoose, { type Connection } from 'mongoose';
import { startStore, stopChild, type RunningStore } from '@ptw/devstore';
import { ensureIndexes, registerModels, type Models } from '@ptw/db';
import { REPO_ROOT } from '../../libs/devstore/src/stack';

jest.setTimeout(150_000);

const WORKER = path.join(REPO_ROOT, 'services/workflow/dist/jobs/worker.js');
const JOBS = ['check_expiring_permits', 'check_overdue_workflow_tasks', 'auto_expire_permits'];
const H = 3600_000;

let store: RunningStore | undefined;
let mongoUrl: string;
let conn: Connection;
let models: Models;
let logDir: string;
let seq = 0;

function permit(endOffsetMs: number) {
  seq++;
  const now = Date.now();
  return {
    permit_number: `PTW-2030-${String(seq).padStart(6, '0')}`,
    project_id: 'p1',
    permit_type_id: 'hot-work',
    title: `Permit ${seq}`,
    status: 'active',
    created_by: 'u-creator',
    version: 1,
    planned_start_time: new Date(now - 10 * H),
    planned_end_time: new Date(now + endOffsetMs),
    created_at: new Date(now - 20 * H),
    updated_at: new Date(now - 20 * H),
  };
}

beforeAll(async () => {
  const base = process.env.MONGO_URL;
  mongoUrl = base ? base.replace(/^(mongodb(?:\+srv)?:\/\/[^/?]+)(\/[^?]*)?/, `$1/ptw_e2e_jobs_${Date.now()}`) : (store = await startStore()).url;
  logDir = fs.mkdtempSync(path.join(os.tmpdir(), 'ptw-jobs-'));
  conn = await mongoose.createConnection(mongoUrl, { retryWrites: false }).asPromise();
  models = registerModels(conn);
  await ensureIndexes(conn);
  await models.User.insertMany([
    { _id: 'u-creator', name: 'Carla Creator', email: 'carla@example.com', role: 'worker', project_ids: ['p1'] },
    { _id: 'u-verifier', name: 'Vic Verifier', email: 'vic@example.com', role: 'supervisor', project_ids: ['p1'] },
    { _id: 'u-m1', name: 'Mona Manager', email: 'mona@example.com', role: 'manager', project_ids: ['p1'] },
    { _id: 'u-m2', name: 'Max Manager', email: 'max@example.com', role: 'manager', project_ids: ['p1'] },
  ]);
  await models.Permit.insertMany([...Array.from({ length: 30 }, () => permit(H)), ...Array.from({ length: 30 }, () => permit(-H))]);
  await models.WorkflowStep.insertMany(
    Array.from({ length: 10 }, () => ({
      permit_id: 'p-unknown',
      project_id: 'p1',
      step: 'verification',
      assignee_id: 'u-verifier',
      status: 'pending',
      started_at: new Date(Date.now() - 9 * H),
      limit_hours: 4,
    })),
  );
});

afterAll(async () => {
  await conn?.close();
  await store?.stop();
  if (logDir) fs.rmSync(logDir, { recursive: true, force: true });
});

function startWorker(): ChildProcess {
  return spawn(process.execPath, [WORKER], {
    env: {
      ...process.env,
      NODE_ENV: 'test',
      MONGO_URL: mongoUrl,
      LOG_DIR: logDir,
      PTW_JOB_CHECK_EXPIRING_EVERY: '2 seconds',
      PTW_JOB_CHECK_OVERDUE_EVERY: '2 seconds',
      PTW_JOB_AUTO_EXPIRE_EVERY: '2 seconds',
      PTW_JOB_RETRY_BASE_MS: '50',
    },
    stdio: ['ignore', 'ignore', 'inherit'],
  });
}

const successSlots = async (job: string, since: Date) => (await models.JobRun.find({ job, outcome: 'success', started_at: { $gte: since } }).lean()).map((r) => r.slot);

/** Runs `n` workers until each job has run `slots` scheduled slots, adding past-end permits meanwhile. */
async function phase(n: number, slots: number): Promise<Record<string, string[]>> {
  const since = new Date();
  const workers = Array.from({ length: n }, startWorker);
  const trickle = setInterval(() => void models.Permit.insertMany([permit(-H), permit(-H), permit(-H)]).catch(() => undefined), 700);
  try {
    const until = Date.now() + 60_000;
    for (;;) {
      const counts = await Promise.all(JOBS.map((j) => successSlots(j, since)));
      if (counts.every((c) => c.length >= slots)) break;
      if (Date.now() > until) throw new Error(`slots after 60 s: ${counts.map((c) => c.length).join(', ')}`);
      for (const w of workers) if (w.exitCode !== null) throw new Error(`a worker exited with code ${w.exitCode}`);
      await new Promise((r) => setTimeout(r, 250));
    }
  } finally {
    clearInterval(trickle);
    await Promise.all(workers.map((w) => stopChild(w, 10_000)));
  }
  return Object.fromEntries(await Promise.all(JOBS.map(async (j) => [j, await successSlots(j, since)])));
}

it('when two and then three workers share one store, then each scheduled slot runs once and every permit and notification is handled once', async () => {
  const two = await phase(2, 3);
  const three = await phase(3, 3);
  for (const job of JOBS) {
    expect(two[job].length).toBeGreaterThanOrEqual(3);
    expect(three[job].length).toBeGreaterThanOrEqual(3);
    for (const slot of [...two[job], ...three[job]]) expect(slot).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d[02468]\.000Z$/);
  }

  // Each slot executed once: one row per (job, slot, attempt) and at most one success per (job, slot).
  const runs = await models.JobRun.find().lean();
  const tally = (keys: string[]) => keys.reduce((m, k) => m.set(k, (m.get(k) ?? 0) + 1), new Map<string, number>());
  expect(Math.max(...tally(runs.map((r) => `${r.job}|${r.slot}|${r.attempt}`)).values())).toBe(1);
  expect(Math.max(...tally(runs.filter((r) => r.outcome === 'success').map((r) => `${r.job}|${r.slot}`)).values())).toBe(1);
  expect(runs.filter((r) => r.outcome === 'running')).toEqual([]);

  // The work itself happened once: one version step, one audit event, one notification per expired permit.
  const expired = await models.Permit.find({ status: 'expired' }).lean();
  expect(expired.length).toBeGreaterThanOrEqual(30);
  expect(expired.every((p) => p.version === 2)).toBe(true);
  const audits = await models.AuditEvent.find({ to: 'expired' }).lean();
  expect(audits).toHaveLength(expired.length);
  expect(new Set(audits.map((a) => a.permit_id)).size).toBe(expired.length);

  const notes = await models.Notification.find().lean();
  expect(Math.max(...tally(notes.map((n) => `${n.user_id}|${n.dedupe_key}`)).values())).toBe(1);
  const byType = tally(notes.map((n) => n.type));
  expect(byType.get('ptw_expired')).toBe(expired.length);
  expect(byType.get('ptw_expiring')).toBe(30);
  expect(byType.get('ptw_overdue')).toBe(10);
  expect(byType.get('ptw_escalated')).toBe(20);

  // Every executed attempt was logged once, by whichever worker ran it.
  const lines = fs
    .readFileSync(path.join(logDir, 'workflow-jobs.log'), 'utf8')
    .split('\n')
    .filter(Boolean)
    .map((l) => JSON.parse(l) as Record<string, unknown>);
  const logged = lines.filter((l) => typeof l.event === 'string' && l.event.startsWith('job_') && l.outcome === 'success');
  expect(logged).toHaveLength(runs.filter((r) => r.outcome === 'success').length);
  expect(JSON.stringify(lines)).not.toMatch(/Carla|Mona|Max |@example\.com/);
});
