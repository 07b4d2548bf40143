import { serviceConfigSchema } from '@ptw/common';
import { slaConfigSchema } from '@ptw/domain';
import { z } from 'zod';
import { jobsConfigSchema } from './jobs/config';

/** Workflow service settings: shared ones, SLAs (health's overdue counts), jobs and alerts. */
export const workflowConfigSchema = serviceConfigSchema
  .extend(slaConfigSchema.shape)
  .extend(jobsConfigSchema.shape)
  .extend({
    /** The local store's backend (as `make up` and the tests choose it): on `sqlite` the default list takes the general path, not registration order (see @ptw/domain listPermits). */
    PTW_STORE_BACKEND: z.enum(['postgresql', 'sqlite']).default('postgresql'),
  });
export type WorkflowConfig = z.infer<typeof workflowConfigSchema>;
