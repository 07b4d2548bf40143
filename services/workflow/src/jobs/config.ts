import { booleanVariable, loadConfig } from '@ptw/common';
import { z } from 'zod';

/** The workflow service's background jobs (SPEC §8). */
export const JOB_NAMES = ['check_expiring_permits', 'check_overdue_workflow_tasks', 'auto_expire_permits'] as const;
export type JobName = (typeof JOB_NAMES)[number];

export function isJobName(name: string): name is JobName {
  return (JOB_NAMES as readonly string[]).includes(name);
}

/** A job schedule: the configured text, its period and the UTC cron expression Agenda runs it on. */
export interface Schedule {
  text: string;
  ms: number;
  cron: string;
}

const UNIT_MS: Record<string, number> = {
  s: 1000,
  sec: 1000,
  second: 1000,
  seconds: 1000,
  m: 60_000,
  min: 60_000,
  minute: 60_000,
  minutes: 60_000,
  h: 3_600_000,
  hour: 3_600_000,
  hours: 3_600_000,
  d: 86_400_000,
  day: 86_400_000,
  days: 86_400_000,
};

/**
 * Parses an interval such as `15 minutes`, `2 seconds` or `1 hour` into a cron expression whose
 * ticks fall on multiples of the period since the epoch (UTC). Aligned ticks are what makes the
 * slot of a run (`floor(time / period)`) the same on every worker, so the period must divide a
 * minute, an hour or a day; anything else is refused with the reason.
 */
export function parseSchedule(text: string): Schedule {
  const m = /^\s*(\d+)\s*([a-z]+)\s*$/i.exec(text);
  const unit = m ? UNIT_MS[m[2].toLowerCase()] : undefined;
  if (!m || unit === undefined) throw new Error(`expected "<n> seconds|minutes|hours|days", got "${text}"`);
  const ms = Number(m[1]) * unit;
  const invalid = () => new Error(`"${text}" must divide a minute, an hour or a day (e.g. 2 seconds, 15 minutes, 6 hours)`);
  let cron: string;
  if (ms <= 0) throw invalid();
  else if (ms === 86_400_000) cron = '0 0 0 * * *';
  else if (ms % 3_600_000 === 0 && ms < 86_400_000) {
    const h = ms / 3_600_000;
    if (24 % h !== 0) throw invalid();
    cron = `0 0 */${h} * * *`;
  } else if (ms % 60_000 === 0 && ms < 3_600_000) {
    const min = ms / 60_000;
    if (60 % min !== 0) throw invalid();
    cron = `0 */${min} * * * *`;
  } else if (ms < 60_000) {
    const s = ms / 1000;
    if (60 % s !== 0) throw invalid();
    cron = `*/${s} * * * * *`;
  } else throw invalid();
  return { text: text.trim(), ms, cron };
}

const schedule = (fallback: string) =>
  z
    .string()
    .default(fallback)
    .transform((text, ctx) => {
      try {
        return parseSchedule(text);
      } catch (err) {
        ctx.addIssue({ code: 'custom', message: (err as Error).message });
        return z.NEVER;
      }
    });

const ms = (fallback: number) => z.coerce.number().int().min(0).max(3_600_000).default(fallback);

/** Environment of the jobs (validated once at start-up, with the service's own settings). */
export const jobsConfigSchema = z.object({
  /** Whether this process runs the schedules (`worker` of startJobs); API-only replicas set false. */
  PTW_JOBS_WORKER: booleanVariable(true),
  PTW_JOB_CHECK_EXPIRING_EVERY: schedule('15 minutes'),
  PTW_JOB_CHECK_OVERDUE_EVERY: schedule('15 minutes'),
  PTW_JOB_AUTO_EXPIRE_EVERY: schedule('5 minutes'),
  /** Full-jitter backoff: the n-th retry waits a random whole number of ms in [0, min(cap, base·2^(n-1))]. */
  PTW_JOB_RETRY_BASE_MS: ms(1000),
  PTW_JOB_RETRY_CAP_MS: ms(60_000),
  /**
   * How long a worker's Agenda lock on a running job lasts without being renewed (it is renewed
   * every third of it while the job runs). A dead worker's job is picked up again after this long;
   * a stopped process may also linger this long / 2 on Agenda's lock-check timers.
   */
  PTW_JOB_LOCK_LIFETIME_MS: z.coerce.number().int().min(1000).max(3_600_000).default(30_000),
  /** Documents a job reads and writes per store round trip. */
  PTW_JOB_BATCH_SIZE: z.coerce.number().int().min(1).max(10_000).default(500),
  /** Where an overdue-threshold crossing is POSTed; unset = recorded and logged only. */
  PTW_ALERT_WEBHOOK_URL: z.url({ protocol: /^https?$/, error: 'expected an http(s) URL' }).optional(),
  PTW_ALERT_OVERDUE_THRESHOLD: z.coerce.number().int().min(0).default(10),
  PTW_ALERT_TIMEOUT_MS: z.coerce.number().int().min(100).max(60_000).default(5000),
});

export type JobsConfig = z.infer<typeof jobsConfigSchema>;

/** Reads and validates the jobs' settings from `env` (fails fast, naming every bad variable). */
export function loadJobsConfig(env: Record<string, string | undefined> = process.env): JobsConfig {
  return loadConfig(jobsConfigSchema, env);
}

/** Each job's schedule. */
export function schedulesOf(config: JobsConfig): Record<JobName, Schedule> {
  return {
    check_expiring_permits: config.PTW_JOB_CHECK_EXPIRING_EVERY,
    check_overdue_workflow_tasks: config.PTW_JOB_CHECK_OVERDUE_EVERY,
    auto_expire_permits: config.PTW_JOB_AUTO_EXPIRE_EVERY,
  };
}
