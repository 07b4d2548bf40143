import { implement, loadConfig, runMain, serviceConfigSchema, startService, type StartedService } from '@ptw/common';
import { healthPb, PROTO_FILES, PROTO_ROOT, SERVICE_NAMES } from '@ptw/proto';

/** Starts the health service, which aggregates the other services' figures over gRPC. */
export async function start(env: NodeJS.ProcessEnv = process.env, opts: { handleSignals?: boolean } = {}): Promise<StartedService> {
  const config = loadConfig(serviceConfigSchema, env);
  return startService({
    name: 'health',
    config,
    address: config.PTW_HEALTH_ADDR,
    defaultMetricsListen: '127.0.0.1:9104',
    protoRoot: PROTO_ROOT,
    protoFiles: [PROTO_FILES.health],
    handleSignals: opts.handleSignals,
    build: async (rt) => ({
      services: [{ name: SERVICE_NAMES.health, definition: healthPb.HealthServiceService, implementation: implement(healthPb.HealthServiceService, {}, rt) }],
    }),
  });
}

if (require.main === module) runMain('health', () => start(process.env, { handleSignals: true }));
