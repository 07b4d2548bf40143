/**
 * The overdue-threshold alert against the real store and a loopback webhook receiver: one POST per
 * crossing, whatever the number of runs evaluating it, retried with full-jitter backoff.
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import mongoose, { type Connection } from 'mongoose';
import { startStore, type RunningStore } from '@ptw/devstore';
import { createLogger, Metrics } from '@ptw/common';
import { ensureIndexes, registerModels, type Models } from '@ptw/db';
import { alertCounter, evaluateOverdueAlert, registerAlertModels, type AlertModels, type OverdueAlertDeps } from './alerts';
import { loadJobsConfig } from './config';
import { startJobs } from './index';

jest.setTimeout(60_000);

let store: RunningStore | undefined;
let conn: Connection;
let models: Models;
let alerts: AlertModels;
const log = createLogger('workflow', { stdout: false });

interface Received {
  body: Record<string, unknown>;
  key: string | undefined;
  status: number;
}

let server: http.Server;
let url: string;
let received: Received[] = [];
/** Statuses the receiver answers, in order; 204 once it runs out. */
let plan: number[] = [];

function databaseUrl(name: string): Promise<string> {
  const base = process.env.MONGO_URL;
  if (base) return Promise.resolve(base.replace(/^(mongodb(?:\+srv)?:\/\/[^/?]+)(\/[^?]*)?/, `$1/${name}_${Date.now()}`));
  return startStore().then((s) => (store = s).url);
}

beforeAll(async () => {
  conn = await mongoose.createConnection(await databaseUrl('ptw_jobs_alerts'), { retryWrites: false }).asPromise();
  models = registerModels(conn);
  alerts = registerAlertModels(conn);
  await ensureIndexes(conn);
  server = http.createServer((req, res) => {
    let data = '';
    req.on('data', (c: Buffer) => (data += c.toString()));
    req.on('end', () => {
      const status = plan.shift() ?? 204;
      received.push({ body: JSON.parse(data) as Record<string, unknown>, key: req.headers['idempotency-key'] as string | undefined, status });
      res.writeHead(status).end();
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/hooks/ptw`;
});

afterAll(async () => {
  await new Promise((resolve) => server?.close(resolve));
  await conn?.close();
  await store?.stop();
});

beforeEach(async () => {
  received = [];
  plan = [];
  await Promise.all([models.WorkflowStep, models.Notification, alerts.AlertState, alerts.AlertCrossing].map((m) => (m as typeof models.Notification).deleteMany({})));
});

const accepted = () => received.filter((r) => r.status < 300);

async function addOverdueSteps(n: number): Promise<void> {
  await models.WorkflowStep.insertMany(
    Array.from({ length: n }, () => ({
      permit_id: 'no-such-permit',
      project_id: 'p1',
      step: 'verification',
      assignee_id: 'u-verifier',
      status: 'pending',
      started_at: new Date(Date.now() - 5 * 3600_000),
      limit_hours: 4,
    })),
  );
}

function directDeps(delays: number[] = []): OverdueAlertDeps {
  return {
    models: alerts,
    webhookUrl: url,
    threshold: 2,
    timeoutMs: 2000,
    policy: { maxRetries: 3, baseMs: 100, capMs: 1000, random: () => 0.999_999_9, sleep: async (ms) => void delays.push(ms) },
    log,
    counter: alertCounter(new Metrics('workflow')),
  };
}

it('when the overdue count crosses the threshold, then the webhook receives exactly one alert per crossing', async () => {
  const config = loadJobsConfig({ PTW_ALERT_WEBHOOK_URL: url, PTW_ALERT_OVERDUE_THRESHOLD: '2' });
  const jobs = await startJobs({ conn, models, config, log, metrics: new Metrics('workflow'), worker: false });
  const run = async () => expect((await jobs.runNow('check_overdue_workflow_tasks')).outcome).toBe('success');
  try {
    await addOverdueSteps(2);
    await run();
    expect(received).toHaveLength(0); // 2 is not above 2

    await addOverdueSteps(1);
    await run();
    expect(accepted().map((r) => r.body)).toEqual([{ type: 'ptw_overdue_threshold', count: 3, threshold: 2, at: expect.any(String) }]);

    await run();
    await addOverdueSteps(1);
    await run();
    expect(received).toHaveLength(1); // still above: the same crossing

    await models.WorkflowStep.updateMany({}, { $set: { status: 'completed' } });
    await run();
    await addOverdueSteps(4);
    await run();
    expect(accepted().map((r) => r.body.count)).toEqual([3, 4]);
    expect(new Set(received.map((r) => r.key)).size).toBe(2);
    expect(await alerts.AlertCrossing.countDocuments({ sent_at: { $ne: null } })).toBe(2);
  } finally {
    await jobs.stop();
  }
});

it('when several runs evaluate the same crossing at once, then one alert is sent', async () => {
  const deps = directDeps();
  const now = new Date();
  const outcomes = await Promise.all([1, 2, 3, 4].map(() => evaluateOverdueAlert(deps, 7, now)));
  expect(outcomes.filter((o) => o.crossed)).toHaveLength(1);
  expect(received).toHaveLength(1);
  expect(received[0].body).toEqual({ type: 'ptw_overdue_threshold', count: 7, threshold: 2, at: now.toISOString() });
  expect((await alerts.AlertState.findById('ptw_overdue_threshold').lean())?.above).toBe(true);
});

it('when the webhook fails twice, then the alert is retried with growing full-jitter delays and accepted once', async () => {
  plan = [500, 503];
  const delays: number[] = [];
  const out = await evaluateOverdueAlert(directDeps(delays), 3, new Date());
  expect(out).toEqual({ crossed: true, sent: true });
  expect(received.map((r) => r.status)).toEqual([500, 503, 204]);
  expect(new Set(received.map((r) => r.key))).toEqual(new Set(['ptw_overdue_threshold:1']));
  expect(delays).toEqual([100, 200]);
  expect(await alerts.AlertCrossing.findById('ptw_overdue_threshold:1').lean()).toMatchObject({ attempts: 3, sent_at: expect.any(Date) });
});

it('when the webhook never accepts, then 4 attempts are made and the failure is recorded on the crossing', async () => {
  plan = [500, 500, 500, 500];
  const deps = directDeps();
  const out = await evaluateOverdueAlert(deps, 3, new Date());
  expect(out).toEqual({ crossed: true, sent: false });
  expect(received).toHaveLength(4);
  const crossing = await alerts.AlertCrossing.findById('ptw_overdue_threshold:1').lean();
  expect(crossing).toMatchObject({ attempts: 4, last_error: 'webhook answered HTTP 500' });
  expect(crossing?.sent_at).toBeUndefined();
  expect((await deps.counter.get()).values).toEqual([expect.objectContaining({ labels: { outcome: 'failed' }, value: 1 })]);
  // The episode is over only when the count falls back: the same crossing is not sent again.
  await evaluateOverdueAlert(deps, 5, new Date());
  expect(received).toHaveLength(4);
});
