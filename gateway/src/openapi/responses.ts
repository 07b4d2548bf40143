/**
 * Response schemas of the HTTP API, written once: the OpenAPI document is generated from them and
 * the end-to-end suites check every response against that document. Objects are closed (a field
 * the gateway starts sending without documenting it fails those checks). Fields that proto marks
 * `optional` are absent, not null, when unset.
 */
import { z } from 'zod';
import { THROTTLE_SCOPES } from '../throttle/config';
import { named as register } from './registry';

const named = <T extends z.ZodType>(id: string, schema: T, description?: string) => register('response', id, schema, description);

const dateTime = z.iso.datetime({ offset: true });
const int = z.int32();
const struct = z.record(z.string(), z.unknown());
const PERMIT_STATUSES = ['draft', 'submitted', 'under_review', 'approved', 'active', 'suspended', 'completed', 'cancelled', 'expired', 'rejected'] as const;

export const errorResponse = named(
  'Error',
  z.object({
    error: z.object({
      code: z.string().describe('Machine-readable code, e.g. invalid_argument, unauthenticated, permission_denied, not_found, conflict, throttled'),
      message: z.string().describe('Human-readable; names the offending field for validation errors'),
      details: z
        .unknown()
        .optional()
        .describe(
          'Validation: {field, errors[] (at most 20), truncated?, error_count?}; stale version: {server_version, server_state (id, version, status and the fields the edit named)}; throttled: {scope, retry_after}. At most 16 KiB: larger details are cut and say truncated: true',
        ),
    }),
  }),
  'The error body of every 4xx/5xx response',
);

const closeoutItemDef = z.object({ key: z.string(), label: z.string(), required: z.boolean() });
export const permitType = named(
  'PermitType',
  z.object({
    id: z.string(),
    name: z.string(),
    category: z.string(),
    risk_level: z.string(),
    validity_hours: int,
    escalation_hours: int,
    requires_isolation: z.boolean(),
    closeout_items: z.array(closeoutItemDef),
  }),
);

export const permit = named(
  'Permit',
  z.object({
    id: z.string(),
    permit_number: z.string().describe('PTW-YYYY-NNNNNN'),
    project_id: z.string(),
    permit_type_id: z.string(),
    title: z.string(),
    description: z.string(),
    location: z.string(),
    priority: z.enum(['low', 'medium', 'high', 'critical']),
    probability: int,
    severity: int,
    risk_score: int.describe('probability × severity'),
    risk_level: z.enum(['low', 'medium', 'high', 'extreme']),
    control_measures: z.string(),
    ppe_requirements: z.array(z.string()),
    safety_checklist: z.record(z.string(), z.boolean()),
    planned_start_time: dateTime.optional(),
    planned_end_time: dateTime.optional(),
    actual_start_time: dateTime.optional(),
    actual_end_time: dateTime.optional(),
    status: z.enum(PERMIT_STATUSES),
    created_by: z.string(),
    verifier_id: z.string().optional(),
    approver_id: z.string().optional(),
    submitted_at: dateTime.optional(),
    verified_at: dateTime.optional(),
    approved_at: dateTime.optional(),
    version: int.describe('+1 on every write; send it back on PATCH'),
    created_at: dateTime,
    updated_at: dateTime,
  }),
);

export const permitList = named('PermitList', z.object({ count: int, results: z.array(permit) }));

export const isolationPoint = named(
  'IsolationPoint',
  z.object({
    id: z.string(),
    permit_id: z.string(),
    name: z.string(),
    energy_type: z.string(),
    required: z.boolean(),
    status: z.enum(['assigned', 'isolated', 'verified', 'deisolated']),
    lock_ids: z.array(z.string()),
    isolated_by: z.string().optional(),
    isolated_at: dateTime.optional(),
    verified_by: z.string().optional(),
    verified_at: dateTime.optional(),
    deisolated_by: z.string().optional(),
    deisolated_at: dateTime.optional(),
    notes: z.string(),
    version: int,
  }),
);

export const isolation = named(
  'Isolation',
  z.object({
    points: z.array(isolationPoint),
    summary: z
      .object({ total: int, required: int, verified: int, deisolated: int, pending_verification: int })
      .describe('total counts all points; the others count required points only; pending_verification = required − verified'),
  }),
);

export const closeout = named(
  'Closeout',
  z.object({
    permit_id: z.string(),
    checklist: z.record(z.string(), z.object({ done: z.boolean(), comments: z.string(), by: z.string().optional(), at: dateTime.optional(), label: z.string(), required: z.boolean() })),
    remarks: z.string(),
    completed: z.boolean(),
    completed_at: dateTime.optional(),
    completed_by: z.string().optional(),
    version: int,
  }),
);

export const workflowStep = named(
  'WorkflowStep',
  z.object({
    id: z.string(),
    permit_id: z.string(),
    step: z.enum(['verification', 'approval']),
    assignee_id: z.string(),
    status: z.enum(['pending', 'completed', 'rejected']),
    started_at: dateTime.optional().describe('Absent until the step is due: approval starts when verification completes'),
    limit_hours: int,
    permit_number: z.string(),
    permit_title: z.string(),
    project_id: z.string(),
  }),
);

export const notification = named(
  'Notification',
  z.object({
    id: z.string(),
    user_id: z.string(),
    type: z.string().describe('ptw_expiring, ptw_overdue, ptw_escalated, ptw_expired, …'),
    title: z.string(),
    message: z.string(),
    data: struct.describe('{permit_id, step_id?, …}'),
    read: z.boolean(),
    read_at: dateTime.optional(),
    created_at: dateTime,
  }),
);
export const notificationList = named('NotificationList', z.object({ count: int, results: z.array(notification) }));
export const countResponse = named('Count', z.object({ count: int }));
export const markAllRead = named('MarkAllRead', z.object({ updated: int }));

const syncApplied = z.object({
  entity: z.string(),
  offline_id: z.string(),
  server_id: z.string(),
  new_version: int,
  status: z.string().describe('"already_applied" for a replay, else empty'),
});
const syncConflict = z.object({
  entity: z.string(),
  offline_id: z.string(),
  server_id: z.string(),
  reason: z.enum(['stale_version', 'missing_client_version', 'workflow_error']),
  client_version: int.optional(),
  server_version: int,
  fields: struct.describe("{field: {client, server, merge_hint: last_write_wins|set_merge|true_wins}}; a permit's public fields only, those the change named"),
  server_state: struct.describe("The permit's id, version, status and the public fields the change named"),
  truncated: z.boolean().describe('true when the answer passed its 2 MiB budget of conflict values: fields keep only their merge hints, server_state is empty; read the permit to merge'),
});
const syncRejected = z.object({ entity: z.string(), offline_id: z.string(), server_id: z.string().optional(), reason: z.string(), detail: z.string() });
export const syncResponse = named(
  'SyncResponse',
  z.object({
    applied: z.array(syncApplied),
    conflicts: z.array(syncConflict),
    rejected: z.array(syncRejected),
    summary: z.object({ total: int, applied: int, conflicts: int, rejected: int }).describe('total = applied + conflicts + rejected'),
  }),
);

const kpiRef = z.object({
  id: z.string(),
  permit_number: z.string(),
  title: z.string(),
  status: z.string(),
  project_id: z.string(),
  planned_end_time: dateTime.optional(),
  hours: z.number(),
});
export const kpis = named(
  'Kpis',
  z.object({
    as_of: dateTime,
    counts: z.object({
      total_open: int,
      draft: int,
      submitted: int,
      under_review: int,
      approved: int,
      active: int,
      suspended: int,
      completed_today: int,
      cancelled_today: int,
      expired: int,
      rejected: int,
    }),
    overdue: z.object({ pending_verification: int, pending_approval: int, expiring_soon: int, isolation_pending: int, closeout_pending: int }),
    lists: z.object({ top_overdue: z.array(kpiRef).max(10), expiring_soon: z.array(kpiRef).max(10) }),
  }),
);

const nullableDate = dateTime.nullable();
export const jobState = named(
  'JobState',
  z.object({ name: z.string(), last_run_at: nullableDate, last_success_at: nullableDate, last_error: z.string().nullable(), last_duration_ms: int.nullable() }),
);
const figure = int.nullable().describe('null when the owning service could not give it (see unavailable_reason): never 0 for unknown');
const unavailable_reason = z.string().optional().describe('Why the figures of this section are null (present only then)');
export const health = named(
  'Health',
  z.object({
    as_of: dateTime,
    sync: z.object({ applied_last_24h: figure, conflicts_last_24h: figure, rejected_last_24h: figure, unavailable_reason }),
    exports: z.object({ bulk_exports_last_24h: figure, unavailable_reason }),
    workflow: z.object({ overdue_verification: figure, overdue_approval: figure, unavailable_reason }),
    jobs: z.array(jobState),
    services: z.record(z.string(), z.string()).describe('service → SERVING | NOT_SERVING | UNAVAILABLE …'),
    degraded: z.boolean().describe('true when a service could not be asked; its entry says so'),
  }),
);

export const jobRun = named(
  'JobRun',
  z.object({
    id: z.string(),
    job: z.string(),
    slot: z.string(),
    attempt: int,
    started_at: dateTime,
    finished_at: dateTime.optional(),
    duration_ms: int.optional(),
    outcome: z.enum(['running', 'success', 'error']),
    error_type: z.string().optional(),
    error_message: z.string().optional(),
  }),
);
export const jobs = named(
  'Jobs',
  z.object({
    jobs: z.array(jobState.extend({ schedule: z.string().describe('How often the job runs, as configured: "15 minutes", "1 hour", …') })),
    recent_runs: z.array(jobRun),
  }),
);

export const healthHistory = named(
  'HealthHistory',
  z.object({
    as_of: dateTime,
    hours: z
      .array(
        z.object({ start: dateTime.describe('Start of the hour-long bucket'), applied: int.describe('Excludes already_applied replays'), conflicts: int, rejected: int, bulk_exports: int }),
      )
      .min(1)
      .max(24)
      .describe('Oldest first; the newest bucket ends at as_of'),
    degraded: z.boolean().describe('true when sync or export did not answer; their figures read 0'),
  }),
);

const serviceState = z.string().describe('grpc.health.v1 state as this gateway sees it: SERVING, NOT_SERVING, UNAVAILABLE, …');
const scopeRejections = z.object({ last_hour: int, per_minute: z.array(int).length(60).describe('429s per minute, oldest first; the last is the current minute') });
export const gatewayView = named(
  'GatewayView',
  z.object({
    as_of: dateTime,
    replica: z.string().describe('hostname:pid of the gateway replica that answered'),
    redis: z.enum(['reachable', 'unreachable']),
    store: z.enum(['reachable', 'unreachable', 'unknown']).describe('Derived: reachable when sync, workflow or export is SERVING; unreachable when none is and one is NOT_SERVING'),
    services: z.object({ sync: serviceState, workflow: serviceState, export: serviceState, health: serviceState }),
    throttle_rejections: z
      .object({ window_minutes: z.literal(60), scopes: z.object(Object.fromEntries(THROTTLE_SCOPES.map((s) => [s, scopeRejections]))) })
      .describe('The 429s this replica answered in the last hour, kept in its memory (lost on restart)'),
  }),
);

export const throttleStatus = named(
  'ThrottleStatus',
  z.object({
    user: z.string(),
    scopes: z.array(
      z.object({
        scope: z.enum(THROTTLE_SCOPES),
        limit: int,
        window_seconds: int,
        used: int,
        remaining: int,
        reset_at: dateTime.nullable().describe('When the oldest counted request leaves the window; null when nothing is counted'),
      }),
    ),
  }),
);

export const liveness = named('Liveness', z.object({ status: z.literal('ok') }));
export const readiness = named(
  'Readiness',
  z.object({ status: z.enum(['ready', 'not_ready']), checks: z.record(z.string(), z.string()).describe('redis: ok|unavailable; each service: its grpc.health.v1 status') }),
);
