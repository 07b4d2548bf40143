/** What the gateway runs on: built by main.ts, given to the app and its admin routes. */
import type Redis from 'ioredis';
import type { Logger, Metrics, TokenVerifier } from '@ptw/common';
import type { Clients } from './clients';
import type { GatewayConfig } from './config';

export interface GatewayDeps {
  config: GatewayConfig;
  log: Logger;
  metrics: Metrics;
  verify: TokenVerifier;
  clients: Clients;
  redis: Redis;
}

/** Whether Redis answers a PING within half a second. */
export async function redisUp(redis: Redis): Promise<boolean> {
  try {
    return (await Promise.race([redis.ping(), new Promise((r) => setTimeout(() => r('timeout'), 500))])) === 'PONG';
  } catch {
    return false;
  }
}
