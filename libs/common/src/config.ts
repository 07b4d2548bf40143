import { z } from 'zod';
import { DEV_JWT_SECRET } from './auth/dev';
import { DEFAULT_LOG_MAX_BYTES, DEFAULT_LOG_MAX_FILES } from './logger';

/** Thrown when the environment does not satisfy a service's configuration schema. */
export class ConfigError extends Error {
  constructor(public readonly problems: string[]) {
    super(`invalid configuration:\n  ${problems.join('\n  ')}`);
    this.name = 'ConfigError';
  }
}

const hostPort = z.string().regex(/^[^\s:]+:\d{1,5}$/, 'expected host:port');

/** An on/off variable: `true`/`1` or `false`/`0` (anything else stops start-up), `fallback` when unset. */
export const booleanVariable = (fallback: boolean) =>
  z
    .enum(['true', 'false', '1', '0'], { error: 'expected true or false' })
    .default(fallback ? 'true' : 'false')
    .transform((v) => v === 'true' || v === '1');

const BYTE_UNITS: Record<string, number> = { '': 1, K: 1024, M: 1024 ** 2, G: 1024 ** 3 };

/** A size in bytes, written as a whole number with an optional K, M or G (KiB, MiB, GiB): 0, or at least `min` bytes. */
const byteSize = (fallback: string, min: number) =>
  z
    .string()
    .regex(/^\d+[KMG]?$/, 'expected bytes, e.g. 52428800 or 50M')
    .default(fallback)
    .transform((v) => Number(v.replace(/[KMG]$/, '')) * BYTE_UNITS[v.replace(/^\d+/, '')])
    .refine((n) => n === 0 || n >= min, `expected 0 or at least ${min} bytes`);

/** Settings every process shares: store, Redis, auth, logs and the service addresses. */
export const baseConfigSchema = z.object({
  NODE_ENV: z.enum(['development', 'test', 'production']).default('development'),
  MONGO_URL: z
    .string()
    .regex(/^mongodb(\+srv)?:\/\//, 'expected a mongodb:// URL')
    .default('mongodb://127.0.0.1:27017/ptw'),
  /**
   * Store operations one process runs at once (the driver's connection pool; more wait in the
   * driver). Kept below the local store's own pool: see @ptw/db connectMongo.
   */
  MONGO_MAX_POOL_SIZE: z.coerce.number().int().min(1).max(500).default(10),
  REDIS_URL: z
    .string()
    .regex(/^rediss?:\/\//, 'expected a redis:// URL')
    .default('redis://127.0.0.1:6379'),
  PTW_JWT_SECRET: z.string().min(16, 'must be at least 16 characters').optional(),
  PTW_JWT_PUBLIC_KEY: z.string().optional(),
  PTW_JWT_ALG: z.enum(['HS256', 'RS256', 'ES256']).default('HS256'),
  PTW_JWT_ISSUER: z.string().min(1).default('ptw-dev'),
  PTW_JWT_AUDIENCE: z.string().min(1).default('ptw-api'),
  /** Token the services present to each other; minted from PTW_JWT_SECRET when absent. */
  PTW_SERVICE_TOKEN: z.string().optional(),
  LOG_DIR: z.string().default('logs'),
  LOG_LEVEL: z.enum(['trace', 'debug', 'info', 'warn', 'error', 'fatal']).default('info'),
  /**
   * A process's log file is rotated (`<name>.log` → `.1` → `.2`…) when it reaches this size; 0 = never
   * (for a file several processes append to: rotation needs one writer per file).
   */
  LOG_MAX_BYTES: byteSize(String(DEFAULT_LOG_MAX_BYTES), 1024),
  /** Rotated log files kept per process; older ones are deleted. */
  LOG_MAX_FILES: z.coerce.number().int().min(1).max(1000).default(DEFAULT_LOG_MAX_FILES),
  // Below Linux's ephemeral range (32768–60999), where any outgoing connection of this machine —
  // ours to the store included — may hold a port as its source, or its TIME-WAIT, for a minute.
  PTW_SYNC_ADDR: hostPort.default('127.0.0.1:15051'),
  PTW_WORKFLOW_ADDR: hostPort.default('127.0.0.1:15052'),
  PTW_EXPORT_ADDR: hostPort.default('127.0.0.1:15053'),
  PTW_HEALTH_ADDR: hostPort.default('127.0.0.1:15054'),
  /** Deadline for one gRPC call from the gateway or a service, in milliseconds. */
  PTW_GRPC_DEADLINE_MS: z.coerce.number().int().min(50).max(600_000).default(10_000),
  PTW_SHUTDOWN_GRACE_MS: z.coerce.number().int().min(0).max(120_000).default(10_000),
});

export type BaseConfig = z.infer<typeof baseConfigSchema>;

/**
 * Validates `env` against `schema` once at start-up. Every problem is reported at once, by
 * variable name, so a misconfigured deployment fails fast with one clear message.
 */
export function loadConfig<S extends z.ZodType>(schema: S, env: Record<string, string | undefined> = process.env): z.infer<S> {
  const cleaned: Record<string, string> = {};
  for (const [k, v] of Object.entries(env)) if (v !== undefined && v !== '') cleaned[k] = v;
  const result = schema.safeParse(cleaned);
  if (!result.success) {
    throw new ConfigError(result.error.issues.map((i) => `${i.path.join('.') || '(root)'}: ${i.message}`));
  }
  const cfg = result.data as z.infer<S> & Partial<BaseConfig>;
  // The development secret is in this repository: in production anyone could mint tokens with it.
  // Read from the environment, not the schema: a process that does not use the secret (the job
  // worker) still refuses a deployment that hands it out.
  if (cleaned.NODE_ENV === 'production' && cleaned.PTW_JWT_SECRET === DEV_JWT_SECRET) {
    throw new ConfigError(['PTW_JWT_SECRET: is the published development secret; set a secret of your own when NODE_ENV=production']);
  }
  if ('PTW_JWT_ALG' in cfg) {
    if (cfg.PTW_JWT_ALG === 'HS256' && !cfg.PTW_JWT_SECRET) {
      throw new ConfigError(['PTW_JWT_SECRET: required when PTW_JWT_ALG is HS256']);
    }
    if (cfg.PTW_JWT_ALG !== 'HS256' && !cfg.PTW_JWT_PUBLIC_KEY) {
      throw new ConfigError([`PTW_JWT_PUBLIC_KEY: required when PTW_JWT_ALG is ${cfg.PTW_JWT_ALG}`]);
    }
  }
  return cfg;
}

/** Builds the listen address of a service: `PTW_GRPC_LISTEN` wins, else its own client address. */
export function listenAddress(addr: string, env: Record<string, string | undefined> = process.env): string {
  return env.PTW_GRPC_LISTEN || addr;
}

/**
 * The error to report when listening on `address` failed: a taken port becomes one line naming the
 * variable that moves it (`variable`); any other failure is returned as it is.
 */
export function listenError(err: unknown, address: string, variable: string): Error {
  const e = err instanceof Error ? err : new Error(String(err));
  const inUse = (e as NodeJS.ErrnoException).code === 'EADDRINUSE' || /EADDRINUSE/.test(e.message);
  return inUse ? new Error(`${address} is in use: set ${variable} to another port`) : e;
}
