import { z } from 'zod';

/** The throttle scopes of SPEC §4. */
export const THROTTLE_SCOPES = ['ptw_sync', 'ptw_bulk_export', 'ptw_kpi', 'ptw_notifications'] as const;
export type ThrottleScope = (typeof THROTTLE_SCOPES)[number];

/** What a scope does when Redis cannot count: serve anyway (`open`) or refuse with 503 (`closed`). */
export type FailMode = 'open' | 'closed';

/** A parsed rate: at most `limit` requests in any sliding window of `windowSeconds`. */
export interface Rate {
  limit: number;
  windowSeconds: number;
}

const UNIT_SECONDS = { sec: 1, min: 60, hour: 3600, day: 86_400 } as const;
const RATE = /^([1-9]\d{0,6})\/(sec|min|hour|day)$/;

/** Parses `N/sec|min|hour|day` (1 ≤ N ≤ 9 999 999); anything else is `undefined`. */
export function parseRate(text: string): Rate | undefined {
  const m = RATE.exec(text.trim());
  if (!m) return undefined;
  return { limit: Number(m[1]), windowSeconds: UNIT_SECONDS[m[2] as keyof typeof UNIT_SECONDS] };
}

/** A rate variable: a default as text, parsed once at start-up (loadConfig names the variable). */
const rate = (fallback: string) =>
  z
    .string()
    .default(fallback)
    .transform((text, ctx) => {
      const parsed = parseRate(text);
      if (parsed) return parsed;
      ctx.addIssue({ code: 'custom', message: `expected <count>/<sec|min|hour|day> with count ≥ 1 (e.g. ${fallback}), got "${text}"` });
      return z.NEVER;
    });

const failMode = z.enum(['open', 'closed']).default('open');

/** Default Redis key prefix (PTW_THROTTLE_KEY_PREFIX); keys are `<prefix>:<scope>:user:<id>` or `<prefix>:<scope>:ip:<address>`. */
export const DEFAULT_KEY_PREFIX = 'ptw:throttle';

/**
 * The throttling variables, spread at the end of `gatewayConfigSchema`. Rates default to SPEC §4;
 * every scope fails open unless its `_FAIL` variable says `closed`.
 */
export const throttleConfigShape = {
  PTW_THROTTLE_SYNC: rate('60/min'),
  PTW_THROTTLE_BULK_EXPORT: rate('5/hour'),
  PTW_THROTTLE_KPI: rate('120/min'),
  PTW_THROTTLE_NOTIFICATIONS: rate('120/min'),
  PTW_THROTTLE_SYNC_FAIL: failMode,
  PTW_THROTTLE_BULK_EXPORT_FAIL: failMode,
  PTW_THROTTLE_KPI_FAIL: failMode,
  PTW_THROTTLE_NOTIFICATIONS_FAIL: failMode,
  /**
   * Deadline of one Redis call made by the limiter: past it Redis counts as unreachable. Generous,
   * because an overloaded gateway's own event-loop lag counts against it too.
   */
  PTW_THROTTLE_REDIS_TIMEOUT_MS: z.coerce.number().int().min(10).max(10_000).default(1000),
  /**
   * Start of every throttle key in Redis (`<prefix>:<scope>:user:<id>`): deployments sharing one Redis
   * (staging next to production, or test runs next to `make up`) each need their own, or one's users
   * use up the other's windows. Replicas of one deployment must share it.
   */
  PTW_THROTTLE_KEY_PREFIX: z
    .string()
    .regex(/^[A-Za-z0-9_.:-]{1,64}$/, 'expected 1-64 letters, digits or _.:-')
    .default(DEFAULT_KEY_PREFIX),
};

/** The throttling variables alone (the gateway's schema holds them too). */
export const throttleConfigSchema = z.object(throttleConfigShape);
export type ThrottleConfig = z.infer<typeof throttleConfigSchema>;

/** One scope's settings, resolved from the configuration. */
export interface ScopeSettings extends Rate {
  scope: ThrottleScope;
  failMode: FailMode;
}

/** Per-scope settings from the validated configuration. */
export function scopeSettings(config: ThrottleConfig): Record<ThrottleScope, ScopeSettings> {
  return {
    ptw_sync: { scope: 'ptw_sync', ...config.PTW_THROTTLE_SYNC, failMode: config.PTW_THROTTLE_SYNC_FAIL },
    ptw_bulk_export: { scope: 'ptw_bulk_export', ...config.PTW_THROTTLE_BULK_EXPORT, failMode: config.PTW_THROTTLE_BULK_EXPORT_FAIL },
    ptw_kpi: { scope: 'ptw_kpi', ...config.PTW_THROTTLE_KPI, failMode: config.PTW_THROTTLE_KPI_FAIL },
    ptw_notifications: { scope: 'ptw_notifications', ...config.PTW_THROTTLE_NOTIFICATIONS, failMode: config.PTW_THROTTLE_NOTIFICATIONS_FAIL },
  };
}
