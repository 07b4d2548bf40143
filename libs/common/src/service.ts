import { baseConfigSchema, listenAddress, listenError, type BaseConfig } from './config';
import { createTokenVerifier, mintToken, type TokenVerifier } from './auth/tokens';
import { closeLogFiles, createLogger, type Logger } from './logger';
import { Metrics, startMetricsServer } from './metrics';
import { startGrpcServer, type GrpcServerHandle, type RegisteredService } from './grpc/server';
import { onShutdownSignal } from './shutdown';
import { z } from 'zod';

/** Settings of one microservice process on top of the shared ones. */
export const serviceConfigSchema = baseConfigSchema.extend({
  /** Where this process serves Prometheus metrics (host:port; port 0 = any). */
  PTW_METRICS_LISTEN: z
    .string()
    .regex(/^[^\s:]+:\d{1,5}$/, 'expected host:port')
    .optional(),
});
export type ServiceConfig = z.infer<typeof serviceConfigSchema>;

/** What a service's start-up gets to build its handlers. */
export interface ServiceRuntime<C extends BaseConfig> {
  config: C;
  log: Logger;
  metrics: Metrics;
  verify: TokenVerifier;
  /** Token this service presents when it calls another service. */
  serviceToken(): Promise<string>;
}

export interface BuiltService {
  services: RegisteredService[];
  close?: () => Promise<void>;
  /** Called once the server runs, with a setter for its grpc.health.v1 status (e.g. store lost → NOT_SERVING). */
  watchHealth?: (setServing: (serving: boolean) => void) => void;
}

export interface StartedService {
  port: number;
  metricsPort: number;
  grpc: GrpcServerHandle;
  stop(): Promise<void>;
}

/**
 * Starts one microservice: logger, metrics endpoint, gRPC server with health and reflection, and a
 * graceful stop (NOT_SERVING → drain → `close` resources). `build` creates the service's handlers
 * and returns what to close on stop.
 */
export async function startService<C extends BaseConfig & { PTW_METRICS_LISTEN?: string }>(opts: {
  name: string;
  config: C;
  /** The address this service is reached at; it listens there unless PTW_GRPC_LISTEN says otherwise. */
  address: string;
  defaultMetricsListen: string;
  protoFiles: string[];
  build: (rt: ServiceRuntime<C>) => Promise<BuiltService>;
  /** Install SIGTERM/SIGINT handlers (the process entry point does; tests do not). */
  handleSignals?: boolean;
  logStdout?: boolean;
}): Promise<StartedService> {
  const { config } = opts;
  const log = createLogger(opts.name, { dir: config.LOG_DIR, level: config.LOG_LEVEL, maxBytes: config.LOG_MAX_BYTES, maxFiles: config.LOG_MAX_FILES, stdout: opts.logStdout });
  const metrics = new Metrics(opts.name);
  const verify = createTokenVerifier(config);
  let cachedToken: { token: string; until: number } | undefined;
  const serviceToken = async () => {
    if (config.PTW_SERVICE_TOKEN) return config.PTW_SERVICE_TOKEN;
    if (!cachedToken || cachedToken.until < Date.now()) {
      const ttl = 3600;
      cachedToken = {
        token: await mintToken(config, { user: `svc-${opts.name}`, role: 'service', projects: [], ttlSeconds: ttl }),
        until: Date.now() + (ttl - 300) * 1000,
      };
    }
    return cachedToken.token;
  };
  const built = await opts.build({ config, log, metrics, verify, serviceToken });
  const listen = listenAddress(opts.address);
  const grpc = await startGrpcServer({
    listen,
    services: built.services,
    protoFiles: opts.protoFiles,
  }).catch((err: unknown) => {
    throw listenError(err, listen, `PTW_${opts.name.toUpperCase()}_ADDR/PTW_GRPC_LISTEN`);
  });
  // What grpc.health.v1 answers, for Prometheus (alerts: a service not SERVING, the store unreachable).
  const serving = metrics.gauge('ptw_grpc_serving', '1 while grpc.health.v1 answers SERVING (0: store connection down, or stopping)', []);
  serving.set(1);
  built.watchHealth?.((s) => {
    serving.set(s ? 1 : 0);
    grpc.setServing(s);
  });
  const metricsListen = config.PTW_METRICS_LISTEN ?? opts.defaultMetricsListen;
  const metricsServer = await startMetricsServer(metrics, metricsListen).catch((err: unknown) => {
    throw listenError(err, metricsListen, 'PTW_METRICS_LISTEN');
  });
  log.info({ event: 'started', endpoint: `grpc:${grpc.port}` }, `${opts.name} serving`);
  let stopped: Promise<void> | undefined;
  const stop = () => {
    stopped ??= (async () => {
      serving.set(0);
      await grpc.stop(config.PTW_SHUTDOWN_GRACE_MS);
      await metricsServer.close();
      await built.close?.();
    })();
    return stopped;
  };
  if (opts.handleSignals) onShutdownSignal(log, stop);
  return { port: grpc.port, metricsPort: metricsServer.port, grpc, stop };
}

/**
 * Entry-point helper: runs `start` when the file is executed directly; a configuration error or
 * a failed start prints one clear line and exits 1.
 */
export function runMain(name: string, start: () => Promise<unknown>): void {
  start().catch((err: Error) => {
    process.stderr.write(`${name}: failed to start: ${err.message}\n`);
    // The lines logged before the failure say where it happened: write them before leaving.
    void closeLogFiles().finally(() => process.exit(1));
  });
}
