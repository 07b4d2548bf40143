import { serviceConfigSchema } from '@ptw/common';
import { slaConfigSchema } from '@ptw/domain';
import type { z } from 'zod';
import { jobsConfigSchema } from './jobs/config';

/** Workflow service settings: shared ones, SLAs (health's overdue counts), jobs and alerts. */
export const workflowConfigSchema = serviceConfigSchema.extend(slaConfigSchema.shape).extend(jobsConfigSchema.shape);
export type WorkflowConfig = z.infer<typeof workflowConfigSchema>;
