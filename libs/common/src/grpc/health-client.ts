import { credentials, makeGenericClientConstructor, status as Status, type Client, type ServiceError } from '@grpc/grpc-js';
import { service as healthService } from 'grpc-health-check';

export type HealthState = 'SERVING' | 'NOT_SERVING' | 'UNKNOWN' | 'SERVICE_UNKNOWN' | 'UNAVAILABLE';

const HealthClient = makeGenericClientConstructor(healthService, 'grpc.health.v1.Health');
const clients = new Map<string, Client>();

type CheckFn = (req: { service: string }, opts: { deadline: Date }, cb: (e: ServiceError | null, r?: { status: string }) => void) => void;

/**
 * Asks a server's grpc.health.v1 service for `service`'s status; a server that cannot be reached
 * within the deadline is UNAVAILABLE (never an exception).
 */
export function checkHealth(address: string, service = '', deadlineMs = 1000): Promise<HealthState> {
  let client = clients.get(address);
  if (!client) {
    client = new HealthClient(address, credentials.createInsecure(), { 'grpc.initial_reconnect_backoff_ms': 250, 'grpc.max_reconnect_backoff_ms': 3000 });
    clients.set(address, client);
  }
  const check = (client as unknown as { check: CheckFn }).check.bind(client);
  return new Promise((resolve) => {
    check({ service }, { deadline: new Date(Date.now() + deadlineMs) }, (err, res) => {
      if (err) resolve(err.code === Status.NOT_FOUND ? 'SERVICE_UNKNOWN' : 'UNAVAILABLE');
      else resolve((res?.status as HealthState) ?? 'UNKNOWN');
    });
  });
}
