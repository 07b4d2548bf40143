import { closeLogFiles, type Logger } from './logger';
import { flushTraces } from './tracing';

/**
 * Runs `stop` once on SIGTERM/SIGINT, then exits 0 (1 if stopping failed). A second signal exits
 * at once.
 */
export function onShutdownSignal(log: Logger, stop: () => Promise<void>): void {
  let stopping = false;
  const handler = (signal: NodeJS.Signals) => {
    if (stopping) process.exit(1);
    stopping = true;
    log.info({ event: 'shutdown', outcome: signal }, 'shutting down');
    stop().then(
      () => {
        log.info({ event: 'shutdown', outcome: 'stopped' }, 'stopped');
        void Promise.all([closeLogFiles(), flushTraces()]).finally(() => process.exit(0));
      },
      (err: unknown) => {
        log.error({ event: 'shutdown', err }, 'shutdown failed');
        void Promise.all([closeLogFiles(), flushTraces()]).finally(() => process.exit(1));
      },
    );
  };
  process.once('SIGTERM', handler);
  process.once('SIGINT', handler);
}
