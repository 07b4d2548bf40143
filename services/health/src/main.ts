// First: the tracing instrumentations patch the modules the imports below load.
import '@ptw/common/dist/tracing-register';
import { canManage, implement, invalidArgument, loadConfig, permissionDenied, runMain, serviceConfigSchema, startService, type StartedService } from '@ptw/common';
import { healthPb, PROTO_FILES, SERVICE_NAMES } from '@ptw/proto';
import { z } from 'zod';
import { createAggregator } from './aggregate';

const healthConfigSchema = serviceConfigSchema.extend({
  /** Deadline of each figure asked from a peer: a down service costs at most this. */
  PTW_HEALTH_PEER_DEADLINE_MS: z.coerce.number().int().min(50).max(10_000).default(1200),
  /** How long a complete history answer is served from memory. */
  PTW_HEALTH_HISTORY_CACHE_SECONDS: z.coerce.number().int().min(0).max(3600).default(60),
});

const DEFAULT_HISTORY_HOURS = 12;
const MAX_HISTORY_HOURS = 24;

/** Starts the health service, which aggregates the other services' figures over gRPC. */
export async function start(env: NodeJS.ProcessEnv = process.env, opts: { handleSignals?: boolean } = {}): Promise<StartedService> {
  const config = loadConfig(healthConfigSchema, env);
  return startService({
    name: 'health',
    config,
    address: config.PTW_HEALTH_ADDR,
    defaultMetricsListen: '127.0.0.1:9104',
    protoFiles: [PROTO_FILES.health],
    handleSignals: opts.handleSignals,
    // eslint-disable-next-line @typescript-eslint/require-await -- build returns a promise by contract (startService); this one has nothing to wait for
    build: async (rt) => {
      const aggregator = createAggregator(
        { sync: config.PTW_SYNC_ADDR, workflow: config.PTW_WORKFLOW_ADDR, export: config.PTW_EXPORT_ADDR },
        { deadlineMs: config.PTW_HEALTH_PEER_DEADLINE_MS, metrics: rt.metrics, historyCacheMs: config.PTW_HEALTH_HISTORY_CACHE_SECONDS * 1000 },
      );
      return {
        services: [
          {
            name: SERVICE_NAMES.health,
            definition: healthPb.HealthServiceService,
            implementation: implement(
              healthPb.HealthServiceService,
              {
                getHealth: async (_req, ctx) => {
                  if (!canManage(ctx.principal)) throw permissionDenied('Health is for managers and operators only');
                  // Peers are asked with this service's own token: the figures are system-wide.
                  return aggregator.report(await rt.serviceToken(), ctx.reqId, ctx.trace);
                },
                getHealthHistory: async (req, ctx) => {
                  if (!canManage(ctx.principal)) throw permissionDenied('Health is for managers and operators only');
                  if (!Number.isInteger(req.hours) || req.hours < 0 || req.hours > MAX_HISTORY_HOURS) {
                    throw invalidArgument(`hours: expected 1-${MAX_HISTORY_HOURS}`, { field: 'hours' });
                  }
                  return aggregator.history(await rt.serviceToken(), ctx.reqId, req.hours || DEFAULT_HISTORY_HOURS);
                },
              },
              rt,
            ),
          },
        ],
        close: () => Promise.resolve(aggregator.close()),
      };
    },
  });
}

if (require.main === module) runMain('health', () => start(process.env, { handleSignals: true }));
