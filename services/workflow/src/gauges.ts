/**
 * The gauges the Prometheus alerts (deploy/prometheus/rules/ptw.yml) need and counters cannot give:
 * permits overdue for verification and approval (the SLA queries of health's figures) and each
 * job's persisted state (last run, last success, whether its last attempt failed) with its period.
 * They are read from the store when /metrics is scraped, so they survive restarts and read the same
 * on every replica. A store that does not answer within READ_BOUND_MS leaves them out of that
 * scrape (never a stale or zero figure) rather than making the whole scrape time out.
 */
import { ConnectionStates, type Connection } from 'mongoose';
import type { Metrics } from '@ptw/common';
import type { Models } from '@ptw/db';
import { overdueApprovalQuery, overdueVerificationQuery } from '@ptw/domain';
import type { WorkflowConfig } from './config';
import { schedulesOf, type JobsHandle } from './jobs';

const READ_BOUND_MS = 2000;

/** Registers the gauges on the service's registry. */
export function registerWorkflowGauges(metrics: Metrics, deps: { conn: Connection; models: Models; jobs: JobsHandle; config: WorkflowConfig }): void {
  // The registry collects every gauge of a scrape at once: they share one read of the store.
  const collect = () => refresh();
  const overdue = metrics.gauge('ptw_permits_overdue', 'Permits waiting past their SLA, by stage (verification, approval)', ['stage'], collect);
  const lastRun = metrics.gauge('ptw_job_last_run_timestamp_seconds', "Start of the job's last attempt (absent: never ran)", ['job'], collect);
  const lastSuccess = metrics.gauge('ptw_job_last_success_timestamp_seconds', "End of the job's last successful attempt (absent: never succeeded)", ['job'], collect);
  const lastFailed = metrics.gauge('ptw_job_last_run_failed', "1 when the job's last attempt failed", ['job'], collect);
  const period = metrics.gauge('ptw_job_period_seconds', "The job's schedule period", ['job']);
  for (const [job, s] of Object.entries(schedulesOf(deps.config))) period.set({ job }, s.ms / 1000);
  const stored = [overdue, lastRun, lastSuccess, lastFailed];

  const read = async () => {
    const now = new Date();
    const [verification, approval, states] = await Promise.all([
      deps.models.Permit.countDocuments(overdueVerificationQuery(deps.config, now)),
      deps.models.Permit.countDocuments(overdueApprovalQuery(deps.config, now)),
      deps.jobs.jobStates(),
    ]);
    for (const g of stored) g.reset();
    overdue.set({ stage: 'verification' }, verification);
    overdue.set({ stage: 'approval' }, approval);
    for (const s of states) {
      if (s.last_run_at) lastRun.set({ job: s.name }, Date.parse(s.last_run_at) / 1000);
      if (s.last_success_at) lastSuccess.set({ job: s.name }, Date.parse(s.last_success_at) / 1000);
      lastFailed.set({ job: s.name }, s.last_error ? 1 : 0);
    }
  };
  const load = async () => {
    let timer: NodeJS.Timeout | undefined;
    try {
      if (deps.conn.readyState !== ConnectionStates.connected) throw new Error('store not connected');
      await Promise.race([read(), new Promise((_, reject) => (timer = setTimeout(() => reject(new Error('store too slow')), READ_BOUND_MS)))]);
    } catch {
      for (const g of stored) g.reset();
    } finally {
      clearTimeout(timer);
    }
  };
  let pending: Promise<void> | undefined;
  const refresh = () => (pending ??= load().finally(() => (pending = undefined)));
}
