/**
 * The workflow service's background jobs (SPEC §8) on Agenda 6 with its MongoDB backend.
 *
 * Every process that serves the workflow API calls {@link startJobs}: `runNow`, `listJobs` and
 * `jobStates` work everywhere; with `worker: true` the process also runs the schedules. Any number
 * of workers may run against one store: each scheduled tick is one slot, executed once (see
 * runner.ts); a failing attempt is retried up to 3 times with full-jitter backoff inside the same
 * Agenda run (see retry.ts).
 */
import os from 'node:os';
import { Agenda } from 'agenda';
import { MongoBackend } from '@agendajs/mongo-backend';
import type { Connection } from 'mongoose';
import { notFound, type Logger, type Metrics } from '@ptw/common';
import { findEach, type Models } from '@ptw/db';
import { alertCounter, evaluateOverdueAlert, registerAlertModels, type OverdueAlertDeps } from './alerts';
import { JOB_NAMES, isJobName, schedulesOf, type JobName, type JobsConfig } from './config';
import { JOB_FUNCTIONS, checkOverdueWorkflowTasks } from './jobs';
import { defaultRetryPolicy, type RetryPolicy } from './retry';
import { jobMetrics, manualSlot, runSlot, scheduledSlot, toRunRecord, type JobRunRecord, type JobSpec, type JobStateRecord, type RunnerDeps } from './runner';

export * from './config';
export * from './retry';
export * from './jobs';
export * from './runner';
export * from './alerts';

/** Agenda's job documents. */
export const AGENDA_COLLECTION = 'agenda_jobs';
/** How many runs `listJobs` returns, newest first. */
export const RECENT_RUNS = 50;

export interface StartJobsOptions {
  /** The service's mongoose connection: Agenda stores its jobs in the same database. */
  conn: Connection;
  models: Models;
  config: JobsConfig;
  log: Logger;
  metrics: Metrics;
  /** Run the schedules in this process (else only manual runs and reads). */
  worker: boolean;
  /** Overrides for tests: retry randomness and sleeping, the clock, the webhook client. */
  retry?: Partial<Pick<RetryPolicy, 'random' | 'sleep'>>;
  clock?: () => Date;
  fetch?: typeof fetch;
}

export interface JobsHandle {
  /** Runs a job now, in this process, under a slot of its own; resolves with its last attempt. */
  runNow(name: string): Promise<JobRunRecord>;
  /** Every job's state and the most recent runs (newest first). */
  listJobs(): Promise<{ jobs: JobStateRecord[]; recent_runs: JobRunRecord[] }>;
  /** Every job's state, in the order of {@link JOB_NAMES}. */
  jobStates(): Promise<JobStateRecord[]>;
  /** Stops the schedules, cuts pending retry waits short and waits for running attempts. */
  stop(): Promise<void>;
}

/** Starts the jobs of the workflow service (and their schedules when `worker`). */
export async function startJobs(opts: StartJobsOptions): Promise<JobsHandle> {
  const { conn, models, config, log } = opts;
  // The guarantees rest on these unique indexes; make sure they exist whoever starts first.
  await Promise.all([models.JobRun.createIndexes(), models.Notification.createIndexes(), models.Revision.createIndexes()]);
  const schedules = schedulesOf(config);
  const abort = new AbortController();
  const policy = defaultRetryPolicy(config.PTW_JOB_RETRY_BASE_MS, config.PTW_JOB_RETRY_CAP_MS, opts.retry);
  const clock = opts.clock ?? (() => new Date());
  const deps: RunnerDeps = {
    ctx: { models, batchSize: config.PTW_JOB_BATCH_SIZE },
    log,
    metrics: jobMetrics(opts.metrics),
    policy,
    clock,
    signal: abort.signal,
  };
  const alertDeps: OverdueAlertDeps = {
    models: registerAlertModels(conn),
    webhookUrl: config.PTW_ALERT_WEBHOOK_URL,
    threshold: config.PTW_ALERT_OVERDUE_THRESHOLD,
    timeoutMs: config.PTW_ALERT_TIMEOUT_MS,
    policy,
    log,
    counter: alertCounter(opts.metrics),
    signal: abort.signal,
    fetch: opts.fetch,
  };
  const specs = jobSpecs(alertDeps);
  const running = new Set<Promise<unknown>>();
  const track = <T>(p: Promise<T>): Promise<T> => {
    running.add(p);
    void p.finally(() => running.delete(p)).catch(() => undefined);
    return p;
  };

  let agenda: Agenda | undefined;
  if (opts.worker) {
    if (!conn.db) throw new Error('startJobs: the connection is not open');
    const periods = JOB_NAMES.map((n) => schedules[n].ms);
    agenda = new Agenda({
      backend: new MongoBackend({ mongo: conn.db, collection: AGENDA_COLLECTION }),
      name: `workflow-${os.hostname()}-${process.pid}`,
      // Poll at least twice per period so a tick is picked up well within its slot.
      processEvery: Math.min(5000, Math.floor(Math.min(...periods) / 2)),
      maxConcurrency: JOB_NAMES.length,
      defaultLockLifetime: config.PTW_JOB_LOCK_LIFETIME_MS,
    });
    agenda.on('error', (err: Error) => log.error({ event: 'jobs_scheduler', outcome: 'error', err }, 'scheduler error'));
    for (const name of JOB_NAMES) {
      agenda.define(
        name,
        async (job) => {
          // Renew the lock while the attempts and their backoff waits go on, so that a long run is
          // not declared dead; the lifetime itself stays short so a dead worker's job moves on soon.
          const renew = setInterval(() => void job.touch().catch(() => undefined), Math.floor(config.PTW_JOB_LOCK_LIFETIME_MS / 3));
          renew.unref();
          try {
            await track(runSlot(specs[name], scheduledSlot(clock(), schedules[name].ms), deps));
          } finally {
            clearInterval(renew);
          }
        },
        { concurrency: 1, lockLimit: 1, lockLifetime: config.PTW_JOB_LOCK_LIFETIME_MS },
      );
    }
    await agenda.start();
    for (const name of JOB_NAMES) {
      await agenda.every(schedules[name].cron, name, undefined, { timezone: 'UTC', skipImmediate: true });
    }
    log.info({ event: 'jobs_started', outcome: 'worker' }, 'job schedules running');
  }

  const jobStates = async (): Promise<JobStateRecord[]> => {
    const docs = await findEach<{ _id: unknown; last_run_at?: Date | null; last_success_at?: Date | null; last_error?: string | null; last_duration_ms?: number | null }>(
      models.JobState,
      '_id',
      [...JOB_NAMES],
    );
    const byName = new Map(docs.map((d) => [String(d._id), d]));
    return JOB_NAMES.map((name) => {
      const d = byName.get(name);
      return {
        name,
        last_run_at: d?.last_run_at?.toISOString(),
        last_success_at: d?.last_success_at?.toISOString(),
        last_error: d?.last_error ?? undefined,
        last_duration_ms: d?.last_duration_ms ?? undefined,
        schedule: schedules[name].text,
      };
    });
  };

  let stopped: Promise<void> | undefined;
  return {
    async runNow(name) {
      if (!isJobName(name)) throw notFound(`Unknown job: ${name}`);
      const at = clock();
      const outcome = await track(runSlot(specs[name], manualSlot(at), deps));
      const last = outcome.runs[outcome.runs.length - 1];
      if (!last) throw new Error('manual run was not recorded');
      return last;
    },
    async listJobs() {
      const [jobs, runs] = await Promise.all([jobStates(), models.JobRun.find().sort({ started_at: -1 }).limit(RECENT_RUNS).lean()]);
      return { jobs, recent_runs: runs.map(toRunRecord) };
    },
    jobStates,
    stop() {
      stopped ??= (async () => {
        abort.abort(new Error('jobs stopping'));
        if (agenda) await agenda.drain({ timeout: 30_000 });
        await Promise.allSettled([...running]);
      })();
      return stopped;
    },
  };
}

/** Each job as the runner runs it; the overdue check ends with the threshold alert. */
export function jobSpecs(alertDeps: OverdueAlertDeps): Record<JobName, JobSpec> {
  const specs = {} as Record<JobName, JobSpec>;
  for (const name of JOB_NAMES) specs[name] = { name, run: JOB_FUNCTIONS[name] };
  specs.check_overdue_workflow_tasks = {
    name: 'check_overdue_workflow_tasks',
    run: async (ctx, now) => {
      const result = await checkOverdueWorkflowTasks(ctx, now);
      await evaluateOverdueAlert(alertDeps, result.overdue_count ?? 0, now);
      return result;
    },
  };
  return specs;
}
