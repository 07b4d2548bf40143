import { baseConfigSchema } from '@ptw/common';
import { z } from 'zod';
import { compressionConfigShape } from './middleware/compress';
import { corsOriginsVariable } from './middleware/cors';
import { throttleConfigShape } from './throttle/config';

/** Gateway settings on top of the shared ones. */
export const gatewayConfigSchema = baseConfigSchema.extend({
  GATEWAY_HOST: z.string().default('127.0.0.1'),
  GATEWAY_PORT: z.coerce.number().int().min(0).max(65535).default(8080),
  /** Largest JSON body accepted; sync's own limit (1 MiB of changes) sits below it. */
  PTW_BODY_LIMIT_BYTES: z.coerce
    .number()
    .int()
    .min(1024)
    .max(64 * 1024 * 1024)
    .default(1024 * 1024 + 64 * 1024),
  /** Trust X-Forwarded-For (only behind a proxy that sets it). */
  PTW_TRUST_PROXY: z
    .enum(['true', 'false'])
    .default('false')
    .transform((v) => v === 'true'),
  /** Origins whose browser pages may call the API (CORS), comma-separated; none by default. */
  PTW_CORS_ORIGINS: corsOriginsVariable,
  /** Throttle rates, failure modes and Redis deadline (SPEC §4 "Throttling"). */
  ...throttleConfigShape,
  /** Response compression (gzip / br) for clients that ask. */
  ...compressionConfigShape,
});

export type GatewayConfig = z.infer<typeof gatewayConfigSchema>;
