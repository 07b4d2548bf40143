import type { workflowPb } from '@ptw/proto';

/** Date → ISO string, absent stays absent (optional proto fields). */
export function iso(d: Date | null | undefined): string | undefined {
  return d ? new Date(d).toISOString() : undefined;
}

/** Absent or null → undefined (optional proto fields). */
export function opt<T>(v: T | null | undefined): T | undefined {
  return v === null || v === undefined ? undefined : v;
}

// eslint-disable-next-line @typescript-eslint/no-explicit-any -- lean documents of several collections, mapped field by field
type AnyDoc = Record<string, any>;
/* eslint-disable @typescript-eslint/no-unsafe-assignment, @typescript-eslint/no-unsafe-argument, @typescript-eslint/no-unsafe-member-access -- the mappers below read lean documents of any shape (AnyDoc): the proto message types they return are the check */

/** A permit document as the proto `Permit` (and so the HTTP JSON). */
export function toPermitMessage(d: AnyDoc): workflowPb.Permit {
  return {
    id: String(d._id),
    permit_number: d.permit_number,
    project_id: d.project_id,
    permit_type_id: d.permit_type_id,
    title: d.title,
    description: d.description ?? '',
    location: d.location ?? '',
    priority: d.priority,
    probability: d.probability,
    severity: d.severity,
    risk_score: d.risk_score,
    risk_level: d.risk_level,
    control_measures: d.control_measures ?? '',
    ppe_requirements: d.ppe_requirements ?? [],
    safety_checklist: { ...(d.safety_checklist ?? {}) },
    planned_start_time: iso(d.planned_start_time),
    planned_end_time: iso(d.planned_end_time),
    actual_start_time: iso(d.actual_start_time),
    actual_end_time: iso(d.actual_end_time),
    status: d.status,
    created_by: d.created_by,
    verifier_id: opt(d.verifier_id),
    approver_id: opt(d.approver_id),
    submitted_at: iso(d.submitted_at),
    verified_at: iso(d.verified_at),
    approved_at: iso(d.approved_at),
    version: d.version,
    created_at: iso(d.created_at) ?? '',
    updated_at: iso(d.updated_at) ?? '',
  };
}

/** An isolation point document as the proto message. */
export function toIsolationMessage(d: AnyDoc): workflowPb.IsolationPoint {
  return {
    id: String(d._id),
    permit_id: d.permit_id,
    name: d.name,
    energy_type: d.energy_type,
    required: !!d.required,
    status: d.status,
    lock_ids: d.lock_ids ?? [],
    isolated_by: opt(d.isolated_by),
    isolated_at: iso(d.isolated_at),
    verified_by: opt(d.verified_by),
    verified_at: iso(d.verified_at),
    deisolated_by: opt(d.deisolated_by),
    deisolated_at: iso(d.deisolated_at),
    notes: d.notes ?? '',
    version: d.version,
  };
}

/** A closeout document (checklist labels from the permit type) as the proto message. */
export function toCloseoutMessage(d: AnyDoc, items: { key: string; label: string; required: boolean }[]): workflowPb.Closeout {
  const checklist: Record<string, workflowPb.CloseoutItemState> = {};
  for (const item of items) {
    const s = (d.checklist ?? {})[item.key] ?? {};
    checklist[item.key] = {
      done: !!s.done,
      comments: s.comments ?? '',
      by: opt(s.by),
      at: iso(s.at),
      label: item.label,
      required: item.required,
    };
  }
  return {
    permit_id: d.permit_id,
    checklist,
    remarks: d.remarks ?? '',
    completed: !!d.completed,
    completed_at: iso(d.completed_at),
    completed_by: opt(d.completed_by),
    version: d.version,
  };
}
