export { parseRate, scopeSettings, throttleConfigSchema, throttleConfigShape, THROTTLE_SCOPES } from './config';
export type { FailMode, Rate, ScopeSettings, ThrottleConfig, ThrottleScope } from './config';
export { callerId, createThrottle, DEFAULT_KEY_PREFIX, retryAfterSeconds, throttledError } from './throttle';
export type { Throttle, ThrottleDeps } from './throttle';
export { throttleRedisOptions } from './redis';
export type { ScopeUsage } from './status';
