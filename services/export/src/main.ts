// First: the tracing instrumentations patch the modules the imports below load.
import '@ptw/common/dist/tracing-register';
import { loadConfig, runMain, startService, type StartedService } from '@ptw/common';
import { connectMongo, ensureIndexes, registerModels, watchConnection, warmTallies } from '@ptw/db';
import { PROTO_FILES, SERVICE_NAMES, exportPb } from '@ptw/proto';
import { exportConfigSchema } from './config';
import { exportHandlers } from './handlers';
import { KpiSnapshots } from './kpis';

/** Starts the export service. */
export async function start(env: NodeJS.ProcessEnv = process.env, opts: { handleSignals?: boolean } = {}): Promise<StartedService> {
  const config = loadConfig(exportConfigSchema, env);
  return startService({
    name: 'export',
    config,
    address: config.PTW_EXPORT_ADDR,
    defaultMetricsListen: '127.0.0.1:9103',
    protoFiles: [PROTO_FILES.export],
    handleSignals: opts.handleSignals,
    build: async (rt) => {
      const conn = await connectMongo(config.MONGO_URL, rt.log, { appName: 'ptw-export', maxPoolSize: config.MONGO_MAX_POOL_SIZE });
      const models = registerModels(conn);
      await ensureIndexes(conn);
      // The health figures' hour and minute rollups of the last day, built before serving rather than
      // by the first health request (which has a peer deadline of about a second); at most 3 s of the
      // start (the rest goes on in the background): see @ptw/db tallies.ts.
      await warmTallies(models, 'export', 3000).catch((err: unknown) => rt.log.warn({ event: 'tallies_warm_failed', err }, 'tally rollups not warmed'));
      const kpiSnapshots = new KpiSnapshots((err) => rt.log.error({ err }, 'kpi snapshot refresh failed'));
      return {
        services: [{ name: SERVICE_NAMES.export, definition: exportPb.ExportServiceService, implementation: exportHandlers(models, rt, kpiSnapshots) }],
        close: async () => {
          await kpiSnapshots.drain();
          await conn.close();
        },
        watchHealth: (setServing) => watchConnection(conn, setServing),
      };
    },
  });
}

if (require.main === module) runMain('export', () => start(process.env, { handleSignals: true }));
