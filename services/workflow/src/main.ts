// First: the tracing instrumentations patch the modules the imports below load.
import '@ptw/common/dist/tracing-register';
import { loadConfig, runMain, startService, type StartedService } from '@ptw/common';
import { connectMongo, ensureIndexes, registerModels, watchConnection } from '@ptw/db';
import { ensureRegistered, warmBlockReadings } from '@ptw/domain';
import { PROTO_FILES, SERVICE_NAMES, workflowPb } from '@ptw/proto';
import { workflowConfigSchema } from './config';
import { workflowHandlers } from './handlers';
import { startJobs } from './jobs';
import { registerWorkflowGauges } from './gauges';

/** Starts the workflow service (permit lifecycle, isolation, closeout, notifications, jobs). */
export async function start(env: NodeJS.ProcessEnv = process.env, opts: { handleSignals?: boolean } = {}): Promise<StartedService> {
  const config = loadConfig(workflowConfigSchema, env);
  return startService({
    name: 'workflow',
    config,
    address: config.PTW_WORKFLOW_ADDR,
    defaultMetricsListen: '127.0.0.1:9102',
    protoFiles: [PROTO_FILES.workflow],
    handleSignals: opts.handleSignals,
    build: async (rt) => {
      const conn = await connectMongo(config.MONGO_URL, rt.log, { appName: 'ptw-workflow', maxPoolSize: config.MONGO_MAX_POOL_SIZE });
      const models = registerModels(conn);
      await ensureIndexes(conn);
      // Permits of an older version get their places in the registration order before the first list (once per store).
      await ensureRegistered(models);
      // Status-filtered lists read per-block status readings: the missing ones are read before
      // serving, at most 3 s of the start (the rest goes on in the background): see @ptw/domain status-blocks.ts.
      await warmBlockReadings(models, 3000).catch((err: unknown) => rt.log.warn({ event: 'block_readings_warm_failed', err }, 'block readings not warmed'));
      // Every replica serves run-now and job states; with PTW_JOBS_WORKER (default true) it also
      // runs the schedules — the job-run unique index keeps each slot to one execution.
      const jobs = await startJobs({ conn, models, config, log: rt.log, metrics: rt.metrics, worker: config.PTW_JOBS_WORKER });
      registerWorkflowGauges(rt.metrics, { conn, models, jobs, config });
      return {
        services: [
          {
            name: SERVICE_NAMES.workflow,
            definition: workflowPb.WorkflowServiceService,
            implementation: workflowHandlers(models, rt, jobs),
          },
        ],
        close: async () => {
          await jobs.stop();
          await conn.close();
        },
        watchHealth: (setServing) => watchConnection(conn, setServing),
      };
    },
  });
}

if (require.main === module) runMain('workflow', () => start(process.env, { handleSignals: true }));
