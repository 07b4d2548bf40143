/**
 * A process that only runs the workflow jobs' schedules (`node services/workflow/dist/jobs/worker.js`):
 * scale workers independently of the API, or run several to check that each slot runs once.
 * Settings: MONGO_URL, LOG_DIR, LOG_LEVEL, PTW_METRICS_LISTEN and the PTW_JOB_* / PTW_ALERT_* variables.
 */
// First: the tracing instrumentations patch the modules the imports below load.
import '@ptw/common/dist/tracing-register';
import { baseConfigSchema, createLogger, loadConfig, Metrics, onShutdownSignal, runMain, startMetricsServer, type Logger } from '@ptw/common';
import { connectMongo, ensureIndexes, registerModels } from '@ptw/db';
import { z } from 'zod';
import { jobsConfigSchema } from './config';
import { startJobs } from './index';

export const workerConfigSchema = baseConfigSchema
  .pick({ NODE_ENV: true, MONGO_URL: true, MONGO_MAX_POOL_SIZE: true, LOG_DIR: true, LOG_LEVEL: true, LOG_MAX_BYTES: true, LOG_MAX_FILES: true })
  .extend(jobsConfigSchema.shape)
  .extend({
    PTW_METRICS_LISTEN: z
      .string()
      .regex(/^[^\s:]+:\d{1,5}$/, 'expected host:port')
      .optional(),
  });

export interface RunningWorker {
  log: Logger;
  stop(): Promise<void>;
}

/** Connects to the store and runs the job schedules until `stop`. */
export async function startWorker(env: Record<string, string | undefined> = process.env): Promise<RunningWorker> {
  const config = loadConfig(workerConfigSchema, env);
  const log = createLogger('workflow-jobs', { dir: config.LOG_DIR, level: config.LOG_LEVEL, maxBytes: config.LOG_MAX_BYTES, maxFiles: config.LOG_MAX_FILES });
  const metrics = new Metrics('workflow-jobs');
  const conn = await connectMongo(config.MONGO_URL, log, { appName: 'ptw-workflow-jobs', maxPoolSize: config.MONGO_MAX_POOL_SIZE });
  const models = registerModels(conn);
  await ensureIndexes(conn);
  const jobs = await startJobs({ conn, models, config, log, metrics, worker: true });
  const metricsServer = config.PTW_METRICS_LISTEN ? await startMetricsServer(metrics, config.PTW_METRICS_LISTEN) : undefined;
  log.info({ event: 'started', outcome: 'worker' }, 'workflow job worker running');
  return {
    log,
    async stop() {
      await jobs.stop();
      await metricsServer?.close();
      await conn.close();
    },
  };
}

if (require.main === module) {
  runMain('workflow-jobs', async () => {
    const worker = await startWorker();
    onShutdownSignal(worker.log, () => worker.stop());
  });
}
