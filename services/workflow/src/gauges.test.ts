import { Metrics } from '@ptw/common';
import type { Connection } from 'mongoose';
import type { Models } from '@ptw/db';
import { workflowConfigSchema } from './config';
import { registerWorkflowGauges } from './gauges';
import type { JobsHandle } from './jobs';

const config = workflowConfigSchema.parse({ PTW_JOB_AUTO_EXPIRE_EVERY: '5 minutes' });

function setUp(opts: { readyState?: number; count?: (q: Record<string, unknown>) => Promise<number>; states?: () => Promise<unknown[]> }) {
  const metrics = new Metrics('workflow');
  let reads = 0;
  const models = {
    Permit: {
      countDocuments: (q: Record<string, unknown>) => {
        reads++;
        return opts.count ? opts.count(q) : Promise.resolve(q.status === 'submitted' ? 3 : 7);
      },
    },
  } as unknown as Models;
  const jobs = {
    jobStates:
      opts.states ??
      (async () => [
        { name: 'check_expiring_permits', last_run_at: '2026-01-01T00:00:00.000Z', last_success_at: '2026-01-01T00:00:01.000Z', schedule: '15 minutes' },
        { name: 'auto_expire_permits', last_run_at: '2026-01-01T00:05:00.000Z', last_success_at: '2026-01-01T00:00:01.000Z', last_error: 'JobError: boom', schedule: '5 minutes' },
        { name: 'check_overdue_workflow_tasks', schedule: '15 minutes' },
      ]),
  } as unknown as JobsHandle;
  const conn = { readyState: opts.readyState ?? 1 } as unknown as Connection;
  registerWorkflowGauges(metrics, { conn, models, jobs, config });
  return { metrics, reads: () => reads };
}

describe('workflow gauges', () => {
  it('when scraped, then overdue counts per stage and each job state are read once from the store', async () => {
    const { metrics, reads } = setUp({});
    const text = await metrics.registry.metrics();
    expect(reads()).toBe(2);
    expect(text).toContain('ptw_permits_overdue{stage="verification",service="workflow"} 3');
    expect(text).toContain('ptw_permits_overdue{stage="approval",service="workflow"} 7');
    expect(text).toContain(`ptw_job_last_run_timestamp_seconds{job="auto_expire_permits",service="workflow"} ${Date.parse('2026-01-01T00:05:00Z') / 1000}`);
    expect(text).toContain('ptw_job_last_run_failed{job="auto_expire_permits",service="workflow"} 1');
    expect(text).toContain('ptw_job_last_run_failed{job="check_expiring_permits",service="workflow"} 0');
    expect(text).toContain('ptw_job_last_run_failed{job="check_overdue_workflow_tasks",service="workflow"} 0');
    expect(text).not.toMatch(/ptw_job_last_success_timestamp_seconds\{job="check_overdue_workflow_tasks"/);
    expect(text).toContain('ptw_job_period_seconds{job="auto_expire_permits",service="workflow"} 300');
  });

  it('when the store is not connected, then the stored figures are absent (never 0) and the periods remain', async () => {
    const { metrics, reads } = setUp({ readyState: 0 });
    const text = await metrics.registry.metrics();
    expect(reads()).toBe(0);
    expect(text).not.toMatch(/^ptw_permits_overdue\{/m);
    expect(text).not.toMatch(/^ptw_job_last_run_failed\{/m);
    expect(text).toContain('ptw_job_period_seconds{job="check_overdue_workflow_tasks",service="workflow"} 900');
  });

  it('when the store does not answer, then the scrape still ends within the bound without the stored figures', async () => {
    const { metrics } = setUp({ count: () => new Promise<number>(() => undefined) });
    const t0 = Date.now();
    const text = await metrics.registry.metrics();
    expect(Date.now() - t0).toBeLessThan(3000);
    expect(text).not.toMatch(/^ptw_permits_overdue\{/m);
    expect(text).toMatch(/^process_cpu_user_seconds_total/m);
  });
});
