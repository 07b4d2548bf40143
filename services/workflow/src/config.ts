import { serviceConfigSchema } from '@ptw/common';
import { slaConfigSchema } from '@ptw/domain';
import type { z } from 'zod';

/** Workflow service settings: shared ones, SLAs (health's overdue counts). */
export const workflowConfigSchema = serviceConfigSchema.extend(slaConfigSchema.shape);
export type WorkflowConfig = z.infer<typeof workflowConfigSchema>;
