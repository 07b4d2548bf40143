import { loadConfig, runMain, startService, type StartedService } from '@ptw/common';
import { connectMongo, ensureIndexes, registerModels, watchConnection } from '@ptw/db';
import { PROTO_FILES, PROTO_ROOT, SERVICE_NAMES, workflowPb } from '@ptw/proto';
import { workflowConfigSchema } from './config';
import { workflowHandlers } from './handlers';

/** Starts the workflow service (permit lifecycle, isolation, closeout, notifications, jobs). */
export async function start(env: NodeJS.ProcessEnv = process.env, opts: { handleSignals?: boolean } = {}): Promise<StartedService> {
  const config = loadConfig(workflowConfigSchema, env);
  return startService({
    name: 'workflow',
    config,
    address: config.PTW_WORKFLOW_ADDR,
    defaultMetricsListen: '127.0.0.1:9102',
    protoRoot: PROTO_ROOT,
    protoFiles: [PROTO_FILES.workflow],
    handleSignals: opts.handleSignals,
    build: async (rt) => {
      const conn = await connectMongo(config.MONGO_URL, rt.log, { appName: 'ptw-workflow' });
      const models = registerModels(conn);
      await ensureIndexes(conn);
      return {
        services: [
          {
            name: SERVICE_NAMES.workflow,
            definition: workflowPb.WorkflowServiceService,
            implementation: workflowHandlers(models, rt),
          },
        ],
        close: () => conn.close(),
        watchHealth: (setServing) => watchConnection(conn, setServing),
      };
    },
  });
}

if (require.main === module) runMain('workflow', () => start(process.env, { handleSignals: true }));
