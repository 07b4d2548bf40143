/**
 * Runs one slot of a job: the attempts of that slot, each claimed in `job_runs` before it runs,
 * recorded when it ends, with full-jitter delays between them, plus the job's state, log lines
 * and metrics.
 *
 * Exactly once per slot rests on the unique index `(job, slot, attempt)` of `job_runs`, not on
 * Agenda's lock: on FerretDB `findAndModify` is not atomic, so two workers can both lock the same
 * Agenda job (or two workers starting at once can both create it). Whichever inserts the attempt
 * row first runs it; the other gets a duplicate-key error and skips the whole slot.
 */
import { randomUUID } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import { inRootSpan, type CounterSeries, type HistogramSeries, type Logger, type Metrics } from '@ptw/common';
import { isDuplicateKey, type Models } from '@ptw/db';
import type { commonPb, workflowPb } from '@ptw/proto';
import type { JobContext, JobResult } from './jobs';
import { fullJitterDelay, type RetryPolicy } from './retry';

export type JobRunRecord = workflowPb.JobRun;
export type JobStateRecord = commonPb.JobState;

/** A job the runner can run: a name and a body of the store and the attempt's start time. */
export interface JobSpec {
  name: string;
  run: (ctx: JobContext, now: Date) => Promise<JobResult>;
}

/** An error whose message this code wrote (no user data in it): recorded as is. */
export class JobError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'JobError';
  }
}

const SAFE_NAME = /^[A-Za-z0-9_.]{1,60}$/;
const SAFE_CODE = /^[A-Za-z0-9_]{1,40}$/;

/**
 * What a run record and the job state keep of an error: its type and a short message that cannot
 * carry personal data. A store error's message can quote a document (a duplicate key quotes the
 * key's values), so only the messages of {@link JobError} are kept; others are reduced to type and code.
 */
export function describeError(err: unknown): { error_type: string; error_message: string } {
  const e = (typeof err === 'object' && err !== null ? err : {}) as { name?: unknown; code?: unknown };
  const type = typeof e.name === 'string' && SAFE_NAME.test(e.name) ? e.name : 'Error';
  if (err instanceof JobError) return { error_type: type, error_message: err.message.slice(0, 200) };
  const code = typeof e.code === 'number' || (typeof e.code === 'string' && SAFE_CODE.test(e.code)) ? `code ${String(e.code)}, ` : '';
  return { error_type: type, error_message: `${code}message withheld (it may quote stored data)` };
}

export interface JobMetrics {
  runs: CounterSeries<'job' | 'outcome'>;
  failures: CounterSeries<'job'>;
  duration: HistogramSeries<'job'>;
}

/** The jobs' Prometheus series (created once per registry, reused by later callers). */
export function jobMetrics(metrics: Metrics): JobMetrics {
  return {
    runs:
      metrics.existing<CounterSeries<'job' | 'outcome'>>('ptw_job_runs_total') ??
      metrics.counter('ptw_job_runs_total', 'Job attempts by job and outcome (success, error, skipped: slot taken by another worker)', ['job', 'outcome']),
    failures:
      metrics.existing<CounterSeries<'job'>>('ptw_job_failures_total') ??
      metrics.counter('ptw_job_failures_total', 'Job slots that failed on every attempt (retries exhausted or abandoned)', ['job']),
    duration:
      metrics.existing<HistogramSeries<'job'>>('ptw_job_duration_seconds') ??
      metrics.histogram('ptw_job_duration_seconds', 'Duration of one job attempt', ['job'], [0.01, 0.05, 0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 300]),
  };
}

export interface RunnerDeps {
  ctx: JobContext;
  log: Logger;
  metrics: JobMetrics;
  policy: RetryPolicy;
  /** The attempts' start time (the `now` a job body sees); injected in tests. */
  clock: () => Date;
  /** Aborts the wait before a retry (shutdown). */
  signal?: AbortSignal;
}

export interface SlotOutcome {
  slot: string;
  /** Another worker had claimed the slot: nothing ran here. */
  skipped: boolean;
  /** Every attempt made here, in order. */
  runs: JobRunRecord[];
  /** Set when the last attempt succeeded. */
  result?: JobResult;
}

/**
 * The slot of a scheduled run: the start of the period it belongs to. Schedules tick on multiples
 * of the period (see `parseSchedule`), so every worker that picks up the same tick computes the same
 * slot; a timer firing a little early (up to a quarter period, at most 1 s) still counts for its tick.
 * A run picked up more than a period late counts for the period it runs in (the skipped tick's
 * work is done by it, and that period's own tick then finds its slot taken).
 */
export function scheduledSlot(at: Date, periodMs: number): string {
  const early = Math.min(1000, Math.floor(periodMs / 4));
  return new Date(Math.floor((at.getTime() + early) / periodMs) * periodMs).toISOString();
}

/** A slot of its own for a run started by hand (never collides with a schedule or another manual run). */
export function manualSlot(at: Date): string {
  return `manual:${at.toISOString()}:${randomUUID().slice(0, 8)}`;
}

/** A `job_runs` document as the API returns it. */
export function toRunRecord(doc: {
  _id: unknown;
  job: string;
  slot: string;
  attempt: number;
  started_at: Date;
  finished_at?: Date | null;
  duration_ms?: number | null;
  outcome: string;
  error_type?: string | null;
  error_message?: string | null;
}): JobRunRecord {
  return {
    id: String(doc._id),
    job: doc.job,
    slot: doc.slot,
    attempt: doc.attempt,
    started_at: doc.started_at.toISOString(),
    finished_at: doc.finished_at?.toISOString(),
    duration_ms: doc.duration_ms ?? undefined,
    outcome: doc.outcome,
    error_type: doc.error_type ?? undefined,
    error_message: doc.error_message ?? undefined,
  };
}

/**
 * Upserts the job's state unless a later run already wrote it (a manual run and a scheduled one may
 * finish out of order). A concurrent first upsert of the same `_id` on FerretDB surfaces as a
 * duplicate key: the document exists then, so the guarded update is retried without upsert.
 */
async function saveState(models: Models, name: string, runAt: Date, set: Record<string, unknown>): Promise<void> {
  const filter = { _id: name as unknown as never, $or: [{ last_run_at: null }, { last_run_at: { $lte: runAt } }] };
  const update = { $set: { last_run_at: runAt, ...set } };
  try {
    await models.JobState.collection.updateOne(filter, update, { upsert: true });
  } catch (err) {
    if (!isDuplicateKey(err)) throw err;
    await models.JobState.collection.updateOne(filter, update);
  }
}

/**
 * Runs the attempts of one slot of `job`: at most `policy.maxRetries + 1`, stopping at the first
 * success. Each attempt first inserts its `job_runs` row (outcome `running`); a duplicate key means
 * another worker owns the slot and nothing runs here. Errors of the job body are recorded and
 * retried; errors of the bookkeeping itself (store unreachable) are thrown.
 */
export async function runSlot(job: JobSpec, slot: string, deps: RunnerDeps): Promise<SlotOutcome> {
  const runs: JobRunRecord[] = [];
  for (let attempt = 1; ; attempt++) {
    // Each attempt is a trace of its own: the store calls it makes are its children.
    const step = await inRootSpan(`job ${job.name}`, { job: job.name, attempt }, (fail) => runAttempt(job, slot, attempt, runs, deps, fail));
    if (typeof step !== 'number') return step;
    try {
      await deps.policy.sleep(step, deps.signal);
    } catch {
      deps.metrics.failures.inc({ job: job.name });
      deps.log.warn({ event: `job_${job.name}`, job: job.name, attempt, outcome: 'abandoned' }, 'retry abandoned: shutting down');
      return { slot, skipped: false, runs };
    }
  }
}

/** One attempt of a slot: the outcome of the slot when it is decided, else the delay before the next attempt. */
async function runAttempt(job: JobSpec, slot: string, attempt: number, runs: JobRunRecord[], deps: RunnerDeps, fail: (errorType: string) => void): Promise<SlotOutcome | number> {
  const { models } = deps.ctx;
  const { log, metrics, policy } = deps;
  const event = `job_${job.name}`;
  const startedAt = deps.clock();
  let runId: unknown;
  try {
    runId = (await models.JobRun.collection.insertOne({ job: job.name, slot, attempt, started_at: startedAt, outcome: 'running' })).insertedId;
  } catch (err) {
    if (!isDuplicateKey(err)) throw err;
    metrics.runs.inc({ job: job.name, outcome: 'skipped' });
    log.info({ event, job: job.name, attempt, outcome: 'skipped' }, 'slot already taken by another worker');
    return { slot, skipped: true, runs };
  }
  const t0 = performance.now();
  let result: JobResult | undefined;
  let failure: unknown;
  try {
    result = await job.run(deps.ctx, startedAt);
  } catch (err) {
    failure = err;
  }
  const duration = Math.round(performance.now() - t0);
  const finishedAt = new Date(startedAt.getTime() + duration);
  const outcome = result ? 'success' : 'error';
  const info = result ? undefined : describeError(failure);
  const fields = { finished_at: finishedAt, duration_ms: duration, outcome, ...info };
  await models.JobRun.collection.updateOne({ _id: runId as never }, { $set: fields });
  runs.push(toRunRecord({ _id: runId, job: job.name, slot, attempt, started_at: startedAt, ...fields }));
  metrics.runs.inc({ job: job.name, outcome });
  metrics.duration.observe({ job: job.name }, duration / 1000);
  if (result) {
    await saveState(models, job.name, startedAt, { last_success_at: finishedAt, last_error: null, last_duration_ms: duration });
    log.info({ event, job: job.name, attempt, outcome, duration_ms: duration, permit_count: result.permit_count }, 'job run finished');
    return { slot, skipped: false, runs, result };
  }
  fail(info?.error_type ?? 'Error');
  await saveState(models, job.name, startedAt, { last_error: `${info?.error_type}: ${info?.error_message}`, last_duration_ms: duration });
  const delay = attempt > policy.maxRetries ? undefined : fullJitterDelay(attempt, policy);
  log.warn(
    { event, job: job.name, attempt, outcome, duration_ms: duration, err: failure },
    delay === undefined ? 'job attempt failed; retries exhausted' : `job attempt failed; retrying in ${delay} ms`,
  );
  if (delay === undefined) {
    metrics.failures.inc({ job: job.name });
    return { slot, skipped: false, runs };
  }
  return delay;
}
