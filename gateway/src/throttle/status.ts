import type Redis from 'ioredis';
import type { ScopeSettings, ThrottleScope } from './config';

/** One scope's current usage for a caller, as `GET /throttle-status/` returns it. */
export interface ScopeUsage {
  scope: ThrottleScope;
  limit: number;
  window_seconds: number;
  used: number;
  remaining: number;
  /** When the oldest counted request leaves the window (ISO 8601), null when nothing is counted. */
  reset_at: string | null;
}

/**
 * Reads a caller's usage of every scope without counting a request. koa-ratelimit's redis driver
 * (async-ratelimiter) keeps one sorted set per key whose members and scores are the admission times
 * in milliseconds, and drops members at or before `now - window` before it counts; so the requests
 * that count are those scored after `now - window`. One MULTI reads every scope at one instant.
 */
export async function readUsage(redis: Redis, scopes: ScopeSettings[], keyOf: (scope: ThrottleScope) => string, now = Date.now()): Promise<ScopeUsage[]> {
  const tx = redis.multi();
  for (const s of scopes) {
    const after = `(${now - s.windowSeconds * 1000}`;
    tx.zcount(keyOf(s.scope), after, '+inf');
    tx.zrangebyscore(keyOf(s.scope), after, '+inf', 'WITHSCORES', 'LIMIT', 0, 1);
  }
  const replies = await tx.exec();
  if (!replies) throw new Error('Redis discarded the status transaction');
  for (const [err] of replies) if (err) throw err;
  return scopes.map((s, i) => {
    const used = Number(replies[2 * i][1]);
    const oldest = replies[2 * i + 1][1] as string[];
    return {
      scope: s.scope,
      limit: s.limit,
      window_seconds: s.windowSeconds,
      used,
      remaining: Math.max(0, s.limit - used),
      reset_at: oldest.length === 2 ? new Date(Number(oldest[1]) + s.windowSeconds * 1000).toISOString() : null,
    };
  });
}
