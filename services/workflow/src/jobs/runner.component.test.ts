/**
 * The runner and the jobs handle against the real store: attempts and their full-jitter delays,
 * giving up, one execution per slot under concurrency, manual runs, listings and the schedules.
 */
import mongoose, { type Connection } from 'mongoose';
import { startStore, type RunningStore } from '@ptw/devstore';
import { AppError, createLogger, memorySink, Metrics, Status, type Logger } from '@ptw/common';
import { ensureIndexes, registerModels, type Models } from '@ptw/db';
import { loadJobsConfig } from './config';
import { startJobs } from './index';
import type { JobResult } from './jobs';
import { jobMetrics, runSlot, type JobSpec, type RunnerDeps } from './runner';

jest.setTimeout(60_000);

let store: RunningStore | undefined;
let conn: Connection;
let models: Models;
const logged = memorySink();
let log: Logger;

function databaseUrl(name: string): Promise<string> {
  const base = process.env.MONGO_URL;
  if (base) return Promise.resolve(base.replace(/^(mongodb(?:\+srv)?:\/\/[^/?]+)(\/[^?]*)?/, `$1/${name}_${Date.now()}`));
  return startStore().then((s) => (store = s).url);
}

beforeAll(async () => {
  conn = await mongoose.createConnection(await databaseUrl('ptw_jobs_runner'), { retryWrites: false }).asPromise();
  models = registerModels(conn);
  await ensureIndexes(conn);
  log = createLogger('workflow', { stdout: false, sink: logged.sink });
});

afterAll(async () => {
  await conn?.close();
  await store?.stop();
});

beforeEach(async () => {
  logged.clear();
  await Promise.all([
    models.JobRun.deleteMany({}),
    models.JobState.deleteMany({}),
    models.Permit.deleteMany({}),
    models.Notification.deleteMany({}),
    models.AuditEvent.deleteMany({}),
    models.Revision.deleteMany({}),
  ]);
});

const OK: JobResult = { permit_count: 0, notified: 0 };

function setup(random: number[] | (() => number), capMs = 10_000) {
  const metrics = new Metrics('workflow');
  const delays: number[] = [];
  const values = Array.isArray(random) ? [...random] : undefined;
  const deps: RunnerDeps = {
    ctx: { models, batchSize: 500 },
    log,
    metrics: jobMetrics(metrics),
    policy: {
      maxRetries: 3,
      baseMs: 100,
      capMs,
      random: values ? () => values.shift() ?? 0 : (random as () => number),
      sleep: async (ms) => void delays.push(ms),
    },
    clock: () => new Date(),
  };
  const value = async (name: string, labels: Record<string, string>) =>
    (await metrics.registry.getSingleMetric(name)?.get())?.values.find((v) => Object.entries(labels).every(([k, l]) => v.labels[k] === l))?.value ?? 0;
  return { deps, delays, value };
}

const runsOf = async (job: string) => (await models.JobRun.find({ job }).sort({ attempt: 1 }).lean()).map((r) => ({ slot: r.slot, attempt: r.attempt, outcome: r.outcome }));

describe('retries', () => {
  it('when a job fails twice then succeeds, then 3 attempts are recorded and the delays take the growing full-jitter bounds', async () => {
    const { deps, delays, value } = setup(() => 0.999_999_9);
    let calls = 0;
    const flaky: JobSpec = {
      name: 'flaky',
      run: async () => {
        if (++calls <= 2) throw new TypeError('transient');
        return { permit_count: 3, notified: 1 };
      },
    };
    const out = await runSlot(flaky, 'slot-1', deps);
    expect(out.result).toEqual({ permit_count: 3, notified: 1 });
    expect(await runsOf('flaky')).toEqual([
      { slot: 'slot-1', attempt: 1, outcome: 'error' },
      { slot: 'slot-1', attempt: 2, outcome: 'error' },
      { slot: 'slot-1', attempt: 3, outcome: 'success' },
    ]);
    // Bounds base·2^(n-1): 100 then 200 ms; a random value just under 1 lands on each bound.
    expect(delays).toEqual([100, 200]);
    const runs = await models.JobRun.find({ job: 'flaky' }).sort({ attempt: 1 }).lean();
    expect(runs.map((r) => [r.error_type ?? null, typeof r.duration_ms, r.finished_at instanceof Date])).toEqual([
      ['TypeError', 'number', true],
      ['TypeError', 'number', true],
      [null, 'number', true],
    ]);
    const state = await models.JobState.findById('flaky').lean();
    expect(state?.last_error).toBeNull();
    expect(state?.last_success_at?.getTime()).toBeGreaterThanOrEqual(runs[2].started_at.getTime());
    expect([await value('ptw_job_runs_total', { job: 'flaky', outcome: 'error' }), await value('ptw_job_runs_total', { job: 'flaky', outcome: 'success' })]).toEqual([2, 1]);
    expect(await value('ptw_job_failures_total', { job: 'flaky' })).toBe(0);
    const flakyLines = logged.lines().filter((l) => l.event === 'job_flaky');
    expect(flakyLines.map((l) => [l.attempt, l.outcome])).toEqual([
      [1, 'error'],
      [2, 'error'],
      [3, 'success'],
    ]);
    expect(flakyLines[2]).toMatchObject({ job: 'flaky', permit_count: 3, duration_ms: expect.any(Number) });
  });

  it('when a job always fails, then 4 attempts are recorded, the delays stay within capped bounds and the state keeps a safe last error', async () => {
    const { deps, delays, value } = setup([0.3, 0.7, 0.999_999_9], 250);
    const broken: JobSpec = {
      name: 'broken',
      run: async () => {
        throw new Error('could not notify bob@example.com (Bob Builder)');
      },
    };
    const out = await runSlot(broken, 'slot-2', deps);
    expect(out.result).toBeUndefined();
    expect((await runsOf('broken')).map((r) => [r.attempt, r.outcome])).toEqual([
      [1, 'error'],
      [2, 'error'],
      [3, 'error'],
      [4, 'error'],
    ]);
    // Bounds 100, 200, then min(cap 250, 400): floor(r·(bound+1)) for r = 0.3, 0.7, ~1.
    expect(delays).toEqual([30, 140, 250]);
    const state = await models.JobState.findById('broken').lean();
    expect(state?.last_error).toBe('Error: message withheld (it may quote stored data)');
    const stored = JSON.stringify(await models.JobRun.find({ job: 'broken' }).lean()) + JSON.stringify(logged.lines());
    expect(stored).not.toMatch(/bob|Builder/i);
    expect(await value('ptw_job_failures_total', { job: 'broken' })).toBe(1);
    expect(await value('ptw_job_runs_total', { job: 'broken', outcome: 'error' })).toBe(4);
  });
});

describe('one execution per slot', () => {
  it('when three workers run the same slot at once, then the body runs once and the others skip', async () => {
    const { deps, value } = setup(() => 0);
    let calls = 0;
    const slow: JobSpec = {
      name: 'slow',
      run: async () => {
        calls++;
        await new Promise((r) => setTimeout(r, 100));
        return OK;
      },
    };
    const outs = await Promise.all([1, 2, 3].map(() => runSlot(slow, '2030-01-15T10:15:00.000Z', deps)));
    expect(calls).toBe(1);
    expect(outs.map((o) => o.skipped).sort()).toEqual([false, true, true]);
    expect(await models.JobRun.countDocuments({ job: 'slow' })).toBe(1);
    expect(await value('ptw_job_runs_total', { job: 'slow', outcome: 'skipped' })).toBe(2);
  });

  it('when a later slot comes, then it runs again (slots are independent)', async () => {
    const { deps } = setup(() => 0);
    let calls = 0;
    const job: JobSpec = { name: 'tick', run: async () => (calls++, OK) };
    await runSlot(job, 'a', deps);
    await runSlot(job, 'a', deps);
    await runSlot(job, 'b', deps);
    expect(calls).toBe(2);
  });
});

describe('startJobs', () => {
  it('when a job is run by hand, then it runs under a manual slot and shows in the listing with its schedule', async () => {
    const metrics = new Metrics('workflow');
    const handle = await startJobs({ conn, models, config: loadJobsConfig({}), log, metrics, worker: false });
    try {
      const [permit] = await models.Permit.insertMany([
        {
          permit_number: 'PTW-2030-900001',
          project_id: 'p1',
          permit_type_id: 'hot-work',
          title: 't',
          status: 'active',
          created_by: 'u1',
          planned_end_time: new Date(Date.now() - 60_000),
          created_at: new Date(),
          updated_at: new Date(),
        },
      ]);
      const run = await handle.runNow('auto_expire_permits');
      expect(run).toMatchObject({ job: 'auto_expire_permits', attempt: 1, outcome: 'success', slot: expect.stringMatching(/^manual:/) });
      expect((await models.Permit.findById(permit._id).lean())?.status).toBe('expired');

      const { jobs, recent_runs } = await handle.listJobs();
      expect(jobs.map((j) => [j.name, j.schedule])).toEqual([
        ['check_expiring_permits', '15 minutes'],
        ['check_overdue_workflow_tasks', '15 minutes'],
        ['auto_expire_permits', '5 minutes'],
      ]);
      expect(jobs[2]).toMatchObject({ last_run_at: run.started_at, last_success_at: run.finished_at, last_duration_ms: run.duration_ms });
      expect(jobs[2].last_error).toBeUndefined();
      expect(jobs[0].last_run_at).toBeUndefined();
      expect(recent_runs[0]).toEqual(run);
      expect(await handle.jobStates()).toEqual(jobs);

      await expect(handle.runNow('drop_database')).rejects.toMatchObject({ code: Status.NOT_FOUND });
      await expect(handle.runNow('drop_database')).rejects.toBeInstanceOf(AppError);
    } finally {
      await handle.stop();
    }
  });

  it('when the process is a worker, then Agenda runs every job on its schedule, one run per whole-period slot, and stop ends it', async () => {
    const config = loadJobsConfig({
      PTW_JOB_CHECK_EXPIRING_EVERY: '1 second',
      PTW_JOB_CHECK_OVERDUE_EVERY: '1 second',
      PTW_JOB_AUTO_EXPIRE_EVERY: '1 second',
      // Agenda's lock checks keep timers of half this alive after a run: keep the test process short-lived.
      PTW_JOB_LOCK_LIFETIME_MS: '2000',
    });
    const handle = await startJobs({ conn, models, config, log, metrics: new Metrics('workflow'), worker: true });
    const slotsOf = async (job: string) => (await models.JobRun.find({ job, outcome: 'success' }).lean()).map((r) => r.slot);
    try {
      const until = Date.now() + 15_000;
      while (Date.now() < until) {
        const counts = await Promise.all(['check_expiring_permits', 'check_overdue_workflow_tasks', 'auto_expire_permits'].map(slotsOf));
        if (counts.every((s) => s.length >= 2)) break;
        await new Promise((r) => setTimeout(r, 200));
      }
    } finally {
      await handle.stop();
    }
    for (const job of ['check_expiring_permits', 'check_overdue_workflow_tasks', 'auto_expire_permits']) {
      const slots = await slotsOf(job);
      expect(slots.length).toBeGreaterThanOrEqual(2);
      expect(new Set(slots).size).toBe(slots.length);
      for (const s of slots) expect(s).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.000Z$/);
    }
    const after = await models.JobRun.countDocuments();
    await new Promise((r) => setTimeout(r, 1500));
    expect(await models.JobRun.countDocuments()).toBe(after);
  });
});
