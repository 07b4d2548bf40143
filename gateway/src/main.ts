// First: the tracing instrumentations patch the modules the imports below load.
import '@ptw/common/dist/tracing-register';
import http from 'node:http';
import Redis from 'ioredis';
import { createLogger, createTokenVerifier, listenError, loadConfig, Metrics, onShutdownSignal, runMain, type Logger } from '@ptw/common';
import { createApp } from './app';
import { closeClients, createClients } from './clients';
import { gatewayConfigSchema } from './config';
import { throttleRedisOptions } from './throttle';

/**
 * Largest request head (request line and every header) read; Node answers a longer one 431 itself,
 * before the gateway sees it. Node's own default today, set here so that no `--max-http-header-size`
 * in NODE_OPTIONS can raise it.
 */
export const MAX_HEADER_BYTES = 16 * 1024;

export interface StartedGateway {
  port: number;
  log: Logger;
  stop(): Promise<void>;
}

/** Starts the HTTP gateway (default 127.0.0.1:8080). */
export async function start(env: NodeJS.ProcessEnv = process.env, opts: { handleSignals?: boolean } = {}): Promise<StartedGateway> {
  const config = loadConfig(gatewayConfigSchema, env);
  const log = createLogger('gateway', { dir: config.LOG_DIR, level: config.LOG_LEVEL, maxBytes: config.LOG_MAX_BYTES, maxFiles: config.LOG_MAX_FILES });
  const metrics = new Metrics('gateway');
  const redis = new Redis(config.REDIS_URL, { ...throttleRedisOptions(config), lazyConnect: false });
  redis.on('error', () => undefined); // reconnects by itself; readiness and throttling report the outage
  const clients = createClients(config, metrics);
  const app = createApp({ config, log, metrics, verify: createTokenVerifier(config), clients, redis });
  // eslint-disable-next-line @typescript-eslint/no-misused-promises -- Koa's callback handles its own errors (ctx.onerror): its promise never rejects
  const server = http.createServer({ maxHeaderSize: MAX_HEADER_BYTES }, app.callback());
  server.requestTimeout = 5 * 60_000;
  await new Promise<void>((resolve, reject) => {
    server.once('error', (err) => reject(listenError(err, `${config.GATEWAY_HOST}:${config.GATEWAY_PORT}`, 'GATEWAY_PORT')));
    server.listen(config.GATEWAY_PORT, config.GATEWAY_HOST, () => resolve());
  });
  const port = (server.address() as { port: number }).port;
  log.info({ event: 'started', endpoint: `http:${port}` }, 'gateway listening');
  let stopping: Promise<void> | undefined;
  const stop = () => {
    stopping ??= (async () => {
      await new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeIdleConnections();
        setTimeout(() => {
          server.closeAllConnections();
          resolve();
        }, config.PTW_SHUTDOWN_GRACE_MS).unref();
      });
      closeClients(clients);
      redis.disconnect();
    })();
    return stopping;
  };
  if (opts.handleSignals) onShutdownSignal(log, stop);
  return { port, log, stop };
}

if (require.main === module) runMain('gateway', () => start(process.env, { handleSignals: true }));
