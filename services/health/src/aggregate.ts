/**
 * GetHealth (SPEC §8): real figures gathered over gRPC from their owners, each with its own short
 * deadline, so a service that is down makes the report degraded instead of failing it.
 */
import { checkHealth, createClient, type CallCredentials, type Metrics } from '@ptw/common';
import { exportPb, SERVICE_NAMES, syncPb, workflowPb, type healthPb } from '@ptw/proto';

export interface Peers {
  sync: string;
  workflow: string;
  export: string;
}

export interface Aggregator {
  /** `trace`: the caller's, passed on to the peers (tracing without an endpoint, see HopTrace). */
  report(token: string, reqId: string, trace?: CallCredentials['trace']): Promise<healthPb.HealthReport>;
  history(token: string, reqId: string, hours: number): Promise<healthPb.HealthHistory>;
  close(): void;
}

const HOUR_MS = 3600_000;
/** Hour-long buckets barely move in a minute; several consoles refreshing cost the store one computation. */
const HISTORY_CACHE_MS = 60_000;

/** Figures of one window, per field. */
type Figures = Record<'applied' | 'conflicts' | 'rejected' | 'bulk_exports', number>;

/**
 * Turns counts of growing windows ending now (`cumulative[k]` = since k+1 hours ago) into the
 * counts of each hour, oldest first. The owner counts all the windows in one pass, so a wider
 * window never reads less; a negative difference still reads 0 rather than a count that never
 * happened.
 */
export function hourBuckets(cumulative: Figures[], now: number): healthPb.HealthHour[] {
  const hours = cumulative.map((c, k) => {
    const newer = k === 0 ? undefined : cumulative[k - 1];
    const diff = (f: keyof Figures) => Math.max(0, c[f] - (newer?.[f] ?? 0));
    return { start: new Date(now - (k + 1) * HOUR_MS).toISOString(), applied: diff('applied'), conflicts: diff('conflicts'), rejected: diff('rejected'), bulk_exports: diff('bulk_exports') };
  });
  return hours.reverse();
}

/** Settles `p`, or undefined after `ms` or on error. */
async function within<T>(p: Promise<T>, ms: number): Promise<T | undefined> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([p, new Promise<undefined>((r) => (timer = setTimeout(() => r(undefined), ms)))]);
  } catch {
    return undefined;
  } finally {
    clearTimeout(timer);
  }
}

/** Builds the aggregator with one client per peer; every peer call has `deadlineMs`. */
export function createAggregator(peers: Peers, opts: { deadlineMs: number; metrics: Metrics; historyCacheMs?: number }): Aggregator {
  const o = { defaultDeadlineMs: opts.deadlineMs, metrics: opts.metrics };
  const sync = createClient(syncPb.SyncServiceClient, peers.sync, o);
  const workflow = createClient(workflowPb.WorkflowServiceClient, peers.workflow, o);
  const exporter = createClient(exportPb.ExportServiceClient, peers.export, o);
  const historyCache = new Map<number, { value: healthPb.HealthHistory; until: number }>();
  const historyRunning = new Map<number, Promise<healthPb.HealthHistory>>();
  /**
   * The owners count windows ending now: each is asked once for all the hour boundaries (its
   * GetXStatsEach reads every bucket once for all of them), and the counts since each boundary are
   * differenced here. An owner that does not answer (or answers another number of windows) makes
   * the history degraded, its figures 0 in every hour: never a mix of counted and missing hours,
   * which differencing would turn into a wrong count in the hour beside a missing one.
   */
  const computeHistory = async (token: string, reqId: string, hours: number): Promise<healthPb.HealthHistory> => {
    const creds = { token, reqId, deadlineMs: opts.deadlineMs };
    const now = Date.now();
    const since_each = Array.from({ length: hours }, (_, k) => new Date(now - (k + 1) * HOUR_MS).toISOString());
    const [s, e] = await Promise.all([
      within(sync.call.getSyncStatsEach({ since_each }, creds), opts.deadlineMs + 200),
      within(exporter.call.getExportStatsEach({ since_each }, creds), opts.deadlineMs + 200),
    ]);
    const syncEach = s?.each.length === hours ? s.each : undefined;
    const exportEach = e?.each.length === hours ? e.each : undefined;
    const degraded = !syncEach || !exportEach;
    const cumulative = since_each.map((_, k): Figures => ({
      applied: syncEach?.[k].applied ?? 0,
      conflicts: syncEach?.[k].conflicts ?? 0,
      rejected: syncEach?.[k].rejected ?? 0,
      bulk_exports: exportEach?.[k].bulk_exports ?? 0,
    }));
    const value = { as_of: new Date(now).toISOString(), hours: hourBuckets(cumulative, now), degraded };
    if (!degraded) historyCache.set(hours, { value, until: now + (opts.historyCacheMs ?? HISTORY_CACHE_MS) });
    return value;
  };
  return {
    close() {
      sync.close();
      workflow.close();
      exporter.close();
    },
    async report(token, reqId, trace) {
      const creds = { token, reqId, trace, deadlineMs: opts.deadlineMs };
      const [syncStats, exportStats, wfStats, syncState, wfState, exportState] = await Promise.all([
        within(sync.call.getSyncStats({ since: '' }, creds), opts.deadlineMs + 200),
        within(exporter.call.getExportStats({ since: '' }, creds), opts.deadlineMs + 200),
        within(workflow.call.getWorkflowStats({}, creds), opts.deadlineMs + 200),
        checkHealth(peers.sync, SERVICE_NAMES.sync, opts.deadlineMs),
        checkHealth(peers.workflow, SERVICE_NAMES.workflow, opts.deadlineMs),
        checkHealth(peers.export, SERVICE_NAMES.export, opts.deadlineMs),
      ]);
      const state = (s: string, answered: unknown) => (s === 'SERVING' && !answered ? 'UNAVAILABLE' : s);
      const services = {
        sync: state(syncState, syncStats),
        workflow: state(wfState, wfStats),
        export: state(exportState, exportStats),
      };
      // A figure its owner could not give is unset with the reason (SPEC §8: null, never 0).
      const missing = (name: string, s: string) => ({
        unavailable_reason: s === 'SERVING' || s === 'UNAVAILABLE' ? `${name} did not answer within ${opts.deadlineMs} ms` : `${name} is ${s}`,
      });
      return {
        as_of: new Date().toISOString(),
        sync: syncStats ? { applied_last_24h: syncStats.applied, conflicts_last_24h: syncStats.conflicts, rejected_last_24h: syncStats.rejected } : missing('sync', syncState),
        exports: exportStats ? { bulk_exports_last_24h: exportStats.bulk_exports } : missing('export', exportState),
        workflow: wfStats ? { overdue_verification: wfStats.overdue_verification, overdue_approval: wfStats.overdue_approval } : missing('workflow', wfState),
        jobs: wfStats?.jobs ?? [],
        services,
        degraded: Object.values(services).some((s) => s !== 'SERVING'),
      };
    },
    history(token, reqId, hours) {
      const cached = historyCache.get(hours);
      if (cached && cached.until > Date.now()) return Promise.resolve(cached.value);
      // Consoles opening at once share one computation (the first caller's credentials ask the peers).
      let running = historyRunning.get(hours);
      if (!running) {
        running = computeHistory(token, reqId, hours).finally(() => historyRunning.delete(hours));
        historyRunning.set(hours, running);
      }
      return running;
    },
  };
}
