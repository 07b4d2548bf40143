/**
 * Everything one permit's export needs, gathered by the caller (SPEC §2, §7). Renderers never touch
 * the store: the caller feeds these records, a few at a time, from a cursor.
 *
 * Optional dates accept `null` as well as `undefined`, because lean mongoose documents carry either.
 */
export type OptionalDate = Date | null | undefined;

export interface ExportWorkflowStep {
  step: string;
  assignee_id?: string | null;
  status: string;
  started_at: OptionalDate;
  completed_at?: OptionalDate;
}

export interface ExportIsolationPoint {
  name: string;
  energy_type: string;
  required: boolean;
  status: string;
  lock_ids: readonly string[];
  isolated_by?: string | null;
  isolated_at?: OptionalDate;
  verified_by?: string | null;
  verified_at?: OptionalDate;
  deisolated_by?: string | null;
  deisolated_at?: OptionalDate;
}

/** One closeout item: the permit type's `{label, required}` merged with the closeout's progress. */
export interface ExportCloseoutItem {
  label: string;
  required: boolean;
  done: boolean;
  comments?: string | null;
  by?: string | null;
  at?: OptionalDate;
}

export interface ExportCloseout {
  /** Keyed by item key, in the permit type's order. */
  checklist: Readonly<Record<string, ExportCloseoutItem>>;
  remarks?: string | null;
  completed: boolean;
  completed_at?: OptionalDate;
  completed_by?: string | null;
}

export interface ExportAuditEvent {
  action: string;
  from?: string | null;
  to?: string | null;
  user_id: string;
  at: OptionalDate;
  comments?: string | null;
}

export interface ExportPermit {
  id: string;
  permit_number: string;
  title: string;
  description: string;
  location: string;
  project_id: string;
  project_name?: string | null;
  permit_type_id?: string | null;
  permit_type_name?: string | null;
  status: string;
  priority: string;
  probability: number;
  severity: number;
  risk_score: number;
  risk_level: string;
  control_measures: string;
  ppe_requirements: readonly string[];
  safety_checklist: Readonly<Record<string, boolean>>;
  planned_start_time?: OptionalDate;
  planned_end_time?: OptionalDate;
  actual_start_time?: OptionalDate;
  actual_end_time?: OptionalDate;
  created_by: string;
  verifier_id?: string | null;
  approver_id?: string | null;
  submitted_at?: OptionalDate;
  verified_at?: OptionalDate;
  approved_at?: OptionalDate;
  created_at: OptionalDate;
  updated_at: OptionalDate;
  /**
   * Display names of the users this record mentions (creator, verifier, approver, isolation and
   * closeout actors, audit users), by user id. Ids without a name are shown as the bare id.
   */
  user_names?: Readonly<Record<string, string>>;
  workflow_steps: readonly ExportWorkflowStep[];
  isolation_points: readonly ExportIsolationPoint[];
  closeout?: ExportCloseout | null;
  audit: readonly ExportAuditEvent[];
}

/** What a finished export reports (for the export event and the logs). */
export interface ExportResult {
  permitCount: number;
  /** Bytes written to the output stream. */
  bytes: number;
}
