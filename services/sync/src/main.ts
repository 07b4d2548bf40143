// First: the tracing instrumentations patch the modules the imports below load.
import '@ptw/common/dist/tracing-register';
import { loadConfig, runMain, serviceConfigSchema, startService, type StartedService } from '@ptw/common';
import { connectMongo, ensureIndexes, registerModels, watchConnection, warmTallies } from '@ptw/db';
import { PROTO_FILES, SERVICE_NAMES, syncPb } from '@ptw/proto';
import { syncHandlers } from './handlers';

/** Starts the sync service. */
export async function start(env: NodeJS.ProcessEnv = process.env, opts: { handleSignals?: boolean } = {}): Promise<StartedService> {
  const config = loadConfig(serviceConfigSchema, env);
  return startService({
    name: 'sync',
    config,
    address: config.PTW_SYNC_ADDR,
    defaultMetricsListen: '127.0.0.1:9101',
    protoFiles: [PROTO_FILES.sync],
    handleSignals: opts.handleSignals,
    build: async (rt) => {
      const conn = await connectMongo(config.MONGO_URL, rt.log, { appName: 'ptw-sync', maxPoolSize: config.MONGO_MAX_POOL_SIZE });
      const models = registerModels(conn);
      await ensureIndexes(conn);
      // The health figures' hour and minute rollups of the last day, built before serving rather than
      // by the first health request (which has a peer deadline of about a second); at most 3 s of the
      // start (the rest goes on in the background): see @ptw/db tallies.ts.
      await warmTallies(models, 'sync', 3000).catch((err: unknown) => rt.log.warn({ event: 'tallies_warm_failed', err }, 'tally rollups not warmed'));
      return {
        services: [{ name: SERVICE_NAMES.sync, definition: syncPb.SyncServiceService, implementation: syncHandlers(models, rt) }],
        close: () => conn.close(),
        watchHealth: (setServing) => watchConnection(conn, setServing),
      };
    },
  });
}

if (require.main === module) runMain('sync', () => start(process.env, { handleSignals: true }));
