import { serviceConfigSchema } from '@ptw/common';
import { slaConfigSchema } from '@ptw/domain';
import { z } from 'zod';

/** Export service settings: shared ones, SLAs (KPIs) and the bulk export limit. */
export const exportConfigSchema = serviceConfigSchema.extend(slaConfigSchema.shape).extend({
  PTW_BULK_EXPORT_LIMIT: z.coerce.number().int().min(1).max(100_000).default(200),
  /** KPIs are served from a snapshot at most this old (0: computed on every request); see kpis.ts. */
  PTW_KPI_MAX_AGE_SECONDS: z.coerce.number().int().min(0).max(3600).default(60),
});
export type ExportConfig = z.infer<typeof exportConfigSchema>;
