/**
 * Operator alert when the number of overdue workflow steps crosses a threshold (beyond the original
 * module). A crossing is the count going from ≤ threshold to > threshold; each one is recorded
 * under a key `ptw_overdue_threshold:<episode>` as the `_id` of `alert_crossings`, so of several
 * workers (or a manual and a scheduled run) evaluating the same crossing only the one whose insert
 * wins sends it. The webhook POST is retried with the jobs' full-jitter backoff; delivery is at
 * least once per crossing (a lost response means a resend), so the key also goes out as the
 * `Idempotency-Key` header for receivers that dedupe.
 */
import { Schema, type Connection, type Model } from 'mongoose';
import type { CounterSeries, Logger, Metrics } from '@ptw/common';
import { isDuplicateKey, upsertRetried } from '@ptw/db';
import { retryWithBackoff, type RetryPolicy } from './retry';
import { JobError } from './runner';

export const OVERDUE_ALERT_TYPE = 'ptw_overdue_threshold';

interface AlertStateDoc {
  _id: string;
  above: boolean;
  episode: number;
  count: number;
  updated_at: Date;
}

interface AlertCrossingDoc {
  _id: string;
  type: string;
  count: number;
  threshold: number;
  at: Date;
  sent_at?: Date;
  attempts?: number;
  last_error?: string;
}

export interface AlertModels {
  AlertState: Model<AlertStateDoc>;
  AlertCrossing: Model<AlertCrossingDoc>;
}

const opts = { versionKey: false as const };
const alertStateSchema = new Schema<AlertStateDoc>({ _id: String, above: Boolean, episode: Number, count: Number, updated_at: Date }, opts);
const alertCrossingSchema = new Schema<AlertCrossingDoc>(
  { _id: String, type: String, count: Number, threshold: Number, at: Date, sent_at: Date, attempts: Number, last_error: String },
  opts,
);

/** Registers the two alert collections on the service's connection (their keys are `_id`s: no index to build). */
export function registerAlertModels(conn: Connection): AlertModels {
  return {
    AlertState: (conn.models.AlertState as Model<AlertStateDoc>) ?? conn.model<AlertStateDoc>('AlertState', alertStateSchema, 'alert_states'),
    AlertCrossing: (conn.models.AlertCrossing as Model<AlertCrossingDoc>) ?? conn.model<AlertCrossingDoc>('AlertCrossing', alertCrossingSchema, 'alert_crossings'),
  };
}

export interface OverdueAlertDeps {
  models: AlertModels;
  webhookUrl?: string;
  threshold: number;
  timeoutMs: number;
  policy: RetryPolicy;
  log: Logger;
  counter: CounterSeries<'outcome'>;
  signal?: AbortSignal;
  fetch?: typeof fetch;
}

export interface AlertOutcome {
  /** This call recorded a new crossing. */
  crossed: boolean;
  /** The webhook accepted it. */
  sent: boolean;
}

/** Counter of alert deliveries by outcome (sent, failed, not_configured). */
export function alertCounter(metrics: Metrics): CounterSeries<'outcome'> {
  return metrics.existing<CounterSeries<'outcome'>>('ptw_alerts_total') ?? metrics.counter('ptw_alerts_total', 'Overdue-threshold alerts by delivery outcome', ['outcome']);
}

async function setState(models: AlertModels, set: Partial<AlertStateDoc>): Promise<void> {
  // Two first upserts at once on FerretDB: see upsertRetried.
  await upsertRetried(() => models.AlertState.updateOne({ _id: OVERDUE_ALERT_TYPE }, { $set: set }, { upsert: true }));
}

/**
 * Compares the overdue count of a finished `check_overdue_workflow_tasks` run with the threshold
 * and, on an upward crossing, records it and POSTs `{type, count, threshold, at}` to the webhook.
 * Delivery failures are recorded on the crossing and counted, never thrown: the job's own work is done.
 */
export async function evaluateOverdueAlert(deps: OverdueAlertDeps, count: number, now: Date): Promise<AlertOutcome> {
  const { models, threshold } = deps;
  const state = await models.AlertState.findById(OVERDUE_ALERT_TYPE).lean();
  if (count <= threshold) {
    if (state?.above) await setState(models, { above: false, count, updated_at: now });
    return { crossed: false, sent: false };
  }
  if (state?.above) return { crossed: false, sent: false };
  const episode = (state?.episode ?? 0) + 1;
  const key = `${OVERDUE_ALERT_TYPE}:${episode}`;
  try {
    await models.AlertCrossing.collection.insertOne({ _id: key as never, type: OVERDUE_ALERT_TYPE, count, threshold, at: now });
  } catch (err) {
    if (!isDuplicateKey(err)) throw err;
    // Another run recorded this crossing (and sends it); make sure the state says so.
    await setState(models, { above: true, episode, updated_at: now });
    return { crossed: false, sent: false };
  }
  await setState(models, { above: true, episode, count, updated_at: now });
  if (!deps.webhookUrl) {
    deps.counter.inc({ outcome: 'not_configured' });
    deps.log.warn({ event: 'alert_overdue_threshold', outcome: 'not_configured' }, `overdue steps ${count} > ${threshold}; no webhook configured`);
    return { crossed: true, sent: false };
  }
  const body = JSON.stringify({ type: OVERDUE_ALERT_TYPE, count, threshold, at: now.toISOString() });
  const doFetch = deps.fetch ?? fetch;
  let attempts = 0;
  try {
    await retryWithBackoff(
      async (attempt) => {
        attempts = attempt;
        const res = await doFetch(deps.webhookUrl as string, {
          method: 'POST',
          headers: { 'content-type': 'application/json', 'idempotency-key': key },
          body,
          signal: AbortSignal.timeout(deps.timeoutMs),
        });
        await res.arrayBuffer().catch(() => undefined);
        if (!res.ok) throw new JobError(`webhook answered HTTP ${res.status}`);
      },
      deps.policy,
      {
        signal: deps.signal,
        onError: (err, attempt, delay) =>
          deps.log.warn(
            { event: 'alert_overdue_threshold', attempt, outcome: 'error', err },
            delay === undefined ? 'alert delivery failed; giving up' : `alert delivery failed; retrying in ${delay} ms`,
          ),
      },
    );
  } catch (err) {
    const reason = err instanceof JobError ? err.message : ((err as Error)?.name ?? 'Error');
    await models.AlertCrossing.updateOne({ _id: key }, { $set: { attempts, last_error: reason } });
    deps.counter.inc({ outcome: 'failed' });
    return { crossed: true, sent: false };
  }
  await models.AlertCrossing.updateOne({ _id: key }, { $set: { attempts, sent_at: new Date() } });
  deps.counter.inc({ outcome: 'sent' });
  deps.log.info({ event: 'alert_overdue_threshold', attempt: attempts, outcome: 'sent' }, `overdue steps ${count} > ${threshold}: alert sent`);
  return { crossed: true, sent: true };
}
