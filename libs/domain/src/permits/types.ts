/** The permit shapes the domain passes around (kept apart so any module can import them without a cycle). */
import type { PermitStatus } from '@ptw/db';

// eslint-disable-next-line @typescript-eslint/no-explicit-any -- lean permit documents: the fields the domain relies on are typed, the rest is read per use
export type PermitDoc = Record<string, any> & { _id: unknown; version: number; status: PermitStatus; project_id: string };

/**
 * What a transition still has to write after its status change: the audit event and the workflow
 * steps. It is stored in the permit with the status change itself (one document, one atomic write),
 * and removed once they are written. A writer that failed or died in between leaves it there, and
 * the next read of the permit completes it: no transition stays half applied.
 */
export interface PendingEffects {
  from: PermitStatus;
  to: PermitStatus;
  user_id: string;
  comments: string;
  at: Date;
  version: number;
}

export interface PermitFilterInput {
  status?: string[];
  permit_type?: string;
  project?: string;
  created_from?: string;
  created_to?: string;
  planned_end_from?: string;
  planned_end_to?: string;
  q?: string;
}
