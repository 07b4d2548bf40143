import { Schema, type Connection, type InferSchemaType, type Model } from 'mongoose';

const opts = { versionKey: false as const };

/** The UTC day of a time, YYYY-MM-DD. */
export function utcDay(d: Date | number): string {
  return new Date(d).toISOString().slice(0, 10);
}

export const PERMIT_STATUSES = ['draft', 'submitted', 'under_review', 'approved', 'active', 'suspended', 'completed', 'cancelled', 'expired', 'rejected'] as const;
export type PermitStatus = (typeof PERMIT_STATUSES)[number];

const projectSchema = new Schema({ _id: String, name: { type: String, required: true } }, opts);

const userSchema = new Schema(
  {
    _id: String,
    name: { type: String, required: true },
    email: { type: String, required: true },
    role: { type: String, required: true, enum: ['worker', 'supervisor', 'manager', 'service'] },
    project_ids: { type: [String], default: [] },
  },
  opts,
);
// Escalations go to "the project's managers".
userSchema.index({ project_ids: 1, role: 1 });

const closeoutItemSchema = new Schema({ key: String, label: String, required: Boolean }, { _id: false });

const permitTypeSchema = new Schema(
  {
    _id: String,
    name: { type: String, required: true },
    category: { type: String, required: true },
    risk_level: { type: String, required: true },
    validity_hours: { type: Number, default: 8 },
    escalation_hours: { type: Number, default: 4 },
    requires_isolation: { type: Boolean, default: false },
    closeout_items: { type: [closeoutItemSchema], default: [] },
    active: { type: Boolean, default: true },
  },
  opts,
);
permitTypeSchema.index({ active: 1, name: 1 });

const permitSchema = new Schema(
  {
    permit_number: { type: String, required: true },
    project_id: { type: String, required: true },
    permit_type_id: { type: String, required: true },
    title: { type: String, required: true },
    description: { type: String, default: '' },
    location: { type: String, default: '' },
    priority: { type: String, default: 'medium' },
    probability: { type: Number, default: 1 },
    severity: { type: Number, default: 1 },
    risk_score: { type: Number, default: 1 },
    risk_level: { type: String, default: 'low' },
    control_measures: { type: String, default: '' },
    ppe_requirements: { type: [String], default: [] },
    safety_checklist: { type: Schema.Types.Mixed, default: {} },
    planned_start_time: Date,
    planned_end_time: Date,
    actual_start_time: Date,
    actual_end_time: Date,
    status: { type: String, required: true, enum: PERMIT_STATUSES, default: 'draft' },
    created_by: { type: String, required: true },
    verifier_id: String,
    approver_id: String,
    submitted_at: Date,
    verified_at: Date,
    approved_at: Date,
    version: { type: Number, required: true, default: 1 },
    created_at: { type: Date, required: true },
    updated_at: { type: Date, required: true },
    /**
     * Its place in its project's registration order: 1, 2, 3, … with no gaps (@ptw/domain
     * registration.ts), and that place's block of LIST_BLOCK: the default list's equality reads.
     */
    list_seq: Number,
    list_block: Number,
    /** `<device_id>/<offline_id>` of the offline change that created it (sync crash recovery). */
    sync_origin: String,
    /** The sync batch that created it (a hash of its device and offline ids): a re-sent batch's permits in one equality read. */
    sync_batch: String,
    /** A transition's audit event and steps still to write (@ptw/domain permits.ts completeEffects). */
    pending: { type: Schema.Types.Mixed, default: undefined },
  },
  { ...opts, minimize: false },
);
permitSchema.index({ permit_number: 1 }, { unique: true });
permitSchema.index({ sync_origin: 1 });
permitSchema.index({ sync_batch: 1 });
// List pages (newest first) per project, per (project, status), and for service callers.
permitSchema.index({ project_id: 1, status: 1, created_at: -1 });
permitSchema.index({ project_id: 1, created_at: -1 });
permitSchema.index({ status: 1, created_at: -1 });
permitSchema.index({ created_at: -1 });
// Registration order (@ptw/domain registration.ts): the unique index is what claims a place, so
// two creators never share one; partial so that permits not yet registered (an older version's)
// do not collide on a missing value (FerretDB, which does not implement partial indexes, gets
// the plain index: its PostgreSQL index never counts a missing value as a duplicate).
// On the local store its GIN mirror covers both fields (libs/devstore postgres.ts mirrors a unique
// index's whole key), which is what a probe of a place looks up.
permitSchema.index({ project_id: 1, list_seq: 1 }, { unique: true, partialFilterExpression: { list_seq: { $exists: true } } });
permitSchema.index({ project_id: 1, list_block: 1, list_seq: 1 });
// KPIs' completed/cancelled today.
permitSchema.index({ project_id: 1, status: 1, updated_at: 1 });
permitSchema.index({ status: 1, updated_at: 1 });
permitSchema.index({ status: 1, planned_end_time: 1 });
permitSchema.index({ project_id: 1, planned_end_time: 1 });
// Overdue verification / approval counts (KPIs and health).
permitSchema.index({ status: 1, submitted_at: 1 });
permitSchema.index({ status: 1, verified_at: 1 });

/**
 * One row per written version of a permit, isolation point or closeout. Its unique index is the
 * optimistic-concurrency guard: of two writers starting from version N only one can insert N+1,
 * on FerretDB (whose findAndModify is not atomic) as on MongoDB.
 */
const revisionSchema = new Schema(
  {
    entity: { type: String, required: true },
    entity_id: { type: String, required: true },
    version: { type: Number, required: true },
    user_id: String,
    at: { type: Date, required: true },
  },
  opts,
);
revisionSchema.index({ entity: 1, entity_id: 1, version: 1 }, { unique: true });

const auditEventSchema = new Schema(
  {
    permit_id: { type: String, required: true },
    project_id: { type: String, required: true },
    action: { type: String, required: true },
    from: String,
    to: String,
    user_id: { type: String, required: true },
    comments: { type: String, default: '' },
    at: { type: Date, required: true },
  },
  opts,
);
auditEventSchema.index({ permit_id: 1, at: 1 });

const workflowStepSchema = new Schema(
  {
    permit_id: { type: String, required: true },
    project_id: { type: String, required: true },
    step: { type: String, required: true, enum: ['verification', 'approval'] },
    assignee_id: String,
    status: { type: String, required: true, enum: ['pending', 'completed', 'rejected'] },
    // Unset until the step is due (approval starts when verification completes), so SLA and
    // overdue queries on started_at never count a step that is still waiting for its turn.
    started_at: Date,
    completed_at: Date,
    limit_hours: { type: Number, required: true },
  },
  opts,
);
workflowStepSchema.index({ assignee_id: 1, status: 1 });
workflowStepSchema.index({ status: 1, started_at: 1 });
workflowStepSchema.index({ permit_id: 1, step: 1, status: 1 });

const isolationPointSchema = new Schema(
  {
    permit_id: { type: String, required: true },
    project_id: { type: String, required: true },
    name: { type: String, required: true },
    energy_type: { type: String, required: true },
    required: { type: Boolean, default: true },
    status: { type: String, required: true, enum: ['assigned', 'isolated', 'verified', 'deisolated'], default: 'assigned' },
    lock_ids: { type: [String], default: [] },
    notes: { type: String, default: '' },
    isolated_by: String,
    isolated_at: Date,
    verified_by: String,
    verified_at: Date,
    deisolated_by: String,
    deisolated_at: Date,
    version: { type: Number, required: true, default: 1 },
  },
  opts,
);
isolationPointSchema.index({ permit_id: 1 });
isolationPointSchema.index({ project_id: 1, status: 1 });

const closeoutSchema = new Schema(
  {
    permit_id: { type: String, required: true },
    project_id: { type: String, required: true },
    checklist: { type: Schema.Types.Mixed, default: {} },
    remarks: { type: String, default: '' },
    completed: { type: Boolean, default: false },
    completed_at: Date,
    completed_by: String,
    version: { type: Number, required: true, default: 1 },
  },
  { ...opts, minimize: false },
);
closeoutSchema.index({ permit_id: 1 }, { unique: true });

const notificationSchema = new Schema(
  {
    user_id: { type: String, required: true },
    type: { type: String, required: true },
    title: { type: String, required: true },
    message: { type: String, required: true },
    data: { type: Schema.Types.Mixed, default: {} },
    dedupe_key: { type: String, required: true },
    read: { type: Boolean, default: false },
    read_at: Date,
    created_at: { type: Date, required: true },
  },
  { ...opts, minimize: false },
);
// A notification can never be sent twice, even by racing workers (SPEC §2).
notificationSchema.index({ user_id: 1, dedupe_key: 1 }, { unique: true });
notificationSchema.index({ user_id: 1, read: 1, created_at: -1 });

/** Idempotency of offline sync: one applied result per (device, offline id, entity). */
const syncReceiptSchema = new Schema(
  {
    device_id: { type: String, required: true },
    offline_id: { type: String, required: true },
    entity: { type: String, required: true },
    // pending while the winner of the claim applies the change; applied once it is written.
    // reserved: a permit create's claim, naming the permit's id before it is written; the change
    // is applied exactly when that permit exists (so the receipt never needs a second write).
    status: { type: String, required: true, enum: ['pending', 'reserved', 'applied'] },
    server_id: String,
    new_version: Number,
    user_id: String,
    /** The batch that claimed it (see sync_batch on permits): a re-sent batch's receipts in one equality read. */
    batch: String,
    at: { type: Date, required: true },
  },
  opts,
);
syncReceiptSchema.index({ batch: 1 });
syncReceiptSchema.index({ device_id: 1, offline_id: 1, entity: 1 }, { unique: true });

const syncEventSchema = new Schema(
  {
    device_id: String,
    user_id: String,
    project_id: String,
    entity: String,
    outcome: { type: String, required: true, enum: ['applied', 'conflict', 'rejected'] },
    reason: String,
    at: { type: Date, required: true },
  },
  opts,
);
syncEventSchema.index({ at: 1, outcome: 1 });

const exportEventSchema = new Schema(
  {
    user_id: String,
    project_ids: [String],
    export_type: { type: String, required: true },
    permit_count: Number,
    bytes: Number,
    duration_ms: Number,
    detailed: Boolean,
    outcome: String,
    at: { type: Date, required: true },
  },
  opts,
);
exportEventSchema.index({ at: 1 });

const jobRunSchema = new Schema(
  {
    job: { type: String, required: true },
    slot: { type: String, required: true },
    attempt: { type: Number, required: true },
    started_at: { type: Date, required: true },
    finished_at: Date,
    duration_ms: Number,
    outcome: { type: String, required: true, enum: ['running', 'success', 'error'] },
    error_type: String,
    error_message: String,
  },
  opts,
);
// Exactly one execution per attempt of a scheduled slot, whatever the number of workers.
jobRunSchema.index({ job: 1, slot: 1, attempt: 1 }, { unique: true });
jobRunSchema.index({ job: 1, started_at: -1 });

const jobStateSchema = new Schema(
  {
    _id: String,
    last_run_at: Date,
    last_success_at: Date,
    last_error: String,
    last_duration_ms: Number,
  },
  opts,
);

/** KPIs of one scope (a hash of its projects and SLAs) as of a time: see services/export/src/kpis.ts. */
const kpiSnapshotSchema = new Schema({ _id: String, as_of: { type: Date, required: true }, data: { type: Schema.Types.Mixed, required: true }, compute_ms: Number }, opts);

/** One operation's counts in a time series (see tallies.ts): read by minute, equality only. */
const tallySchema = new Schema(
  {
    series: { type: String, required: true },
    minute: { type: String, required: true },
    hour: { type: String, required: true },
    counts: { type: Schema.Types.Mixed, required: true },
    at: { type: Date, required: true },
  },
  { ...opts, minimize: false },
);
// `at` last: the local store's GIN mirror covers every field of an index but its last (libs/devstore
// postgres.ts), so both equality fields get one and a minute's read does not scan the series.
tallySchema.index({ series: 1, minute: 1, at: 1 });
tallySchema.index({ series: 1, hour: 1, at: 1 });

/** The sum of a closed minute or hour of a series (`_id` `<series>:<level>:<key>`), read by its parent hour or day. */
const tallyRollupSchema = new Schema(
  {
    _id: String,
    series: { type: String, required: true },
    level: { type: String, required: true },
    parent: { type: String, required: true },
    counts: { type: Schema.Types.Mixed, required: true },
  },
  { ...opts, minimize: false },
);
// `_id` last, for the store's GIN mirror (see tallySchema's indexes).
tallyRollupSchema.index({ series: 1, level: 1, parent: 1, _id: 1 });

/**
 * The statuses of one block of a project's registration order (25 places, see @ptw/domain
 * status-blocks.ts) as read at `stamp` (the sum of the block's permit versions): insert-only, the
 * highest stamp of a block is its newest reading. `_id` `<project>:<block>:<stamp>`.
 */
const blockTallySchema = new Schema(
  {
    _id: String,
    project_id: { type: String, required: true },
    block: { type: Number, required: true },
    stamp: { type: Number, required: true },
    filled: { type: Number, required: true },
    counts: { type: Schema.Types.Mixed, required: true },
    /** Permits of the day-counted statuses by UTC day of `updated_at` (@ptw/domain status-blocks.ts); absent in older readings. */
    closed: { type: Schema.Types.Mixed },
  },
  { ...opts, minimize: false },
);
// `stamp` last, for the store's GIN mirror (see tallySchema's indexes): a project's read and a block's.
blockTallySchema.index({ project_id: 1, block: 1, stamp: 1 });

/**
 * The searchable text of one block of a project's registration order (25 places, see @ptw/domain
 * text-blocks.ts) as read at `stamp` (the sum of the block's permit versions): insert-only, the
 * highest stamp of a block is its newest reading. `entries` is one JSON string (a string decodes
 * several times faster on the local store than the same values as fields). `_id` `<project>:<block>:<stamp>`.
 */
const blockTextSchema = new Schema(
  {
    _id: String,
    project_id: { type: String, required: true },
    block: { type: Number, required: true },
    stamp: { type: Number, required: true },
    filled: { type: Number, required: true },
    entries: { type: String, required: true },
  },
  opts,
);
// `stamp` last, for the store's GIN mirror (see tallySchema's indexes).
blockTextSchema.index({ project_id: 1, block: 1, stamp: 1 });

/**
 * "A permit of this block was edited before `at`": written before an edit's permit write, one per
 * block and 10-second slot (`_id` `<project>:<block>:<slot end ms>`), never updated; deleted by a text
 * reading taken long enough after `at`, or by the block's next slot (@ptw/domain text-blocks.ts).
 */
const blockMarkSchema = new Schema({ _id: String, project_id: { type: String, required: true }, block: { type: Number, required: true }, at: { type: Date, required: true } }, opts);
// `at` last, for the store's GIN mirror (see tallySchema's indexes): a project's marks and a block's.
blockMarkSchema.index({ project_id: 1, block: 1, at: 1 });

const counterSchema = new Schema({ _id: String, seq: { type: Number, default: 0 } }, opts);

const schemas = {
  Project: [projectSchema, 'projects'],
  User: [userSchema, 'users'],
  PermitType: [permitTypeSchema, 'permit_types'],
  Permit: [permitSchema, 'permits'],
  Revision: [revisionSchema, 'revisions'],
  AuditEvent: [auditEventSchema, 'audit_events'],
  WorkflowStep: [workflowStepSchema, 'workflow_steps'],
  IsolationPoint: [isolationPointSchema, 'isolation_points'],
  Closeout: [closeoutSchema, 'closeouts'],
  Notification: [notificationSchema, 'notifications'],
  SyncReceipt: [syncReceiptSchema, 'sync_receipts'],
  SyncEvent: [syncEventSchema, 'sync_events'],
  ExportEvent: [exportEventSchema, 'export_events'],
  JobRun: [jobRunSchema, 'job_runs'],
  JobState: [jobStateSchema, 'job_states'],
  Counter: [counterSchema, 'counters'],
  KpiSnapshot: [kpiSnapshotSchema, 'kpi_snapshots'],
  Tally: [tallySchema, 'tallies'],
  TallyRollup: [tallyRollupSchema, 'tally_rollups'],
  BlockTally: [blockTallySchema, 'block_tallies'],
  BlockText: [blockTextSchema, 'block_texts'],
  BlockMark: [blockMarkSchema, 'block_marks'],
} as const;

type Schemas = typeof schemas;
export type Doc<K extends keyof Schemas> = InferSchemaType<Schemas[K][0]>;
export type Models = { [K in keyof Schemas]: Model<Doc<K>> };

/** Registers every model of SPEC §2 (and the bookkeeping collections) on a connection. */
export function registerModels(conn: Connection): Models {
  const out = {} as Record<string, Model<unknown>>;
  for (const [name, [schema, collection]] of Object.entries(schemas)) {
    // eslint-disable-next-line @typescript-eslint/no-unsafe-assignment -- mongoose types the connection's model map as Model<any>
    out[name] = conn.models[name] ?? conn.model(name, schema as Schema, collection);
  }
  return out as unknown as Models;
}
