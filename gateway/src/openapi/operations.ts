/**
 * The documentation of every route of the HTTP API (SPEC §4), one entry per route. Adding a route:
 * register its body/response schemas (requests.ts is validated by the route itself; responses.ts
 * with `named`), then add one entry here; document.component.test.ts fails while a router route has no entry.
 */
import { z } from 'zod';
import { permitFieldsSchema, updatePermitSchema } from '@ptw/domain/dist/input';
import { MAX_PAGE, MAX_PAGE_SIZE } from '../routes';
import type { ThrottleScope } from '../throttle/config';
import { named as register } from './registry';
import * as req from './requests';
import * as res from './responses';

export type Method = 'get' | 'post' | 'patch';

/** What a successful call returns. */
export type Success = { status: 200 | 201; json: z.ZodType; description: string } | { status: 200; binary: string; description: string } | { status: 200; text: string; description: string };

export interface RouteDoc {
  method: Method;
  /** Koa pattern under the API prefix (`/permits/:id/`), or an absolute path when `absolute`. */
  path: string;
  operationId: string;
  tag: string;
  summary: string;
  /** Who may call (SPEC §2/§3); goes into the description. Absent for public routes. */
  roles?: string;
  description?: string;
  /** Public routes: no bearer token, no backend call. */
  public?: true;
  absolute?: true;
  scope?: ThrottleScope;
  params?: Record<string, string>;
  query?: z.ZodObject;
  /** The request body schema (the object the route validates with, or derived from it). */
  body?: z.ZodType;
  ok: Success;
  /** Error statuses whose body is not the error shape (e.g. /readyz's 503). */
  errorBodies?: Partial<Record<number, z.ZodType>>;
  /** Statuses this route adds to the common ones (401, 400/413/415 with a body, 429 when throttled, 503/504). */
  errors?: number[];
}

/** Request bodies are documented in their input form (see registry.ts). */
const named = <T extends z.ZodType>(id: string, schema: T, description?: string) => register('request', id, schema, description);

const createPermit = named(
  'PermitCreate',
  permitFieldsSchema.required({ title: true, permit_type_id: true }),
  'The client-settable fields of a permit; project_id may be omitted when the caller has exactly one project',
);
const patchPermit = named('PermitPatch', updatePermitSchema.extend({ version: req.versionBody.shape.version }), 'The fields to change and the version they were read at');
const transition = named('TransitionRequest', req.transitionBody);
const assignIsolation = named('AssignIsolationRequest', req.assignIsolationBody, 'One point, or {points: [...]} for many');
const updateIsolation = named('UpdateIsolationRequest', req.updateIsolationBody);
const updateCloseout = named('UpdateCloseoutRequest', req.updateCloseoutBody);
const empty = named('Empty', req.emptyBody);
const exportRequest = named('ExportRequest', req.exportBody, 'Without permit_ids (or with use_filters) the list filters of the query string select the permits');
const syncRequest = named(
  'SyncRequest',
  req.syncEnvelope.extend({ changes: z.array(req.syncChange).max(req.SYNC_MAX_CHANGES) }),
  `At most ${req.SYNC_MAX_CHANGES} changes and ${req.SYNC_MAX_BYTES} bytes; a change of the wrong shape is rejected alone (validation_error), the others are applied`,
);

const ANY = 'Any authenticated role (worker, supervisor, manager, service); only the caller’s projects are visible';
const MANAGE = 'Managers and service tokens only (manage capability); others get 403';

const isoQuery = (what: string) => z.string().optional().describe(`${what} (ISO 8601 date or date-time)`);
// Any other value (0, negative, not an integer, over the maximum) is a 400 naming the parameter.
const pageQuery = {
  page: z.int().min(1).max(MAX_PAGE).optional().describe('Page number, from 1 (default 1)'),
  page_size: z.int().min(1).max(MAX_PAGE_SIZE).optional().describe(`Page size, from 1 to ${MAX_PAGE_SIZE} (default 20)`),
};
const permitFilters = {
  status: z.string().optional().describe('Comma-separated statuses, e.g. draft,submitted'),
  permit_type: z.string().optional().describe('Permit type id'),
  project: z.string().optional().describe('Project id (one of the caller’s)'),
  created_from: isoQuery('Created at or after'),
  created_to: isoQuery('Created at or before'),
  planned_end_from: isoQuery('Planned end at or after'),
  planned_end_to: isoQuery('Planned end at or before'),
  q: z.string().optional().describe('Text search in number, title and location'),
};
const PERMIT_ID = { id: 'Permit id (24 hex characters); a permit of another project is 404' };
const json = (schema: z.ZodType, description: string, status: 200 | 201 = 200): Success => ({ status, json: schema, description });

export const ROUTES: RouteDoc[] = [
  { method: 'get', path: '/healthz', absolute: true, public: true, operationId: 'liveness', tag: 'Operations', summary: 'Liveness probe', ok: json(res.liveness, 'The process is up') },
  {
    method: 'get',
    path: '/readyz',
    absolute: true,
    public: true,
    operationId: 'readiness',
    tag: 'Operations',
    summary: 'Readiness probe',
    description: 'Ready when Redis answers and every service is SERVING (a service serves only while its store is up). 503 with the same body and Retry-After when not ready.',
    ok: json(res.readiness, 'Ready'),
    errors: [503],
    errorBodies: { 503: res.readiness },
  },
  {
    method: 'get',
    path: '/metrics',
    absolute: true,
    public: true,
    operationId: 'metrics',
    tag: 'Operations',
    summary: 'Prometheus metrics',
    ok: { status: 200, text: 'text/plain', description: 'Prometheus text exposition format' },
  },
  {
    method: 'get',
    path: '/openapi.json',
    public: true,
    operationId: 'openapi',
    tag: 'Operations',
    summary: 'This document (OpenAPI 3.1)',
    ok: json(z.looseObject({ openapi: z.literal('3.1.0') }), 'The OpenAPI document'),
  },

  {
    method: 'get',
    path: '/permit-types/',
    operationId: 'listPermitTypes',
    tag: 'Permits',
    summary: 'Active permit types',
    roles: ANY,
    ok: json(z.array(res.permitType), 'The active permit types'),
  },
  {
    method: 'get',
    path: '/permits/',
    operationId: 'listPermits',
    tag: 'Permits',
    summary: 'List permits',
    roles: ANY,
    query: z.object({ ...permitFilters, ...pageQuery }),
    ok: json(res.permitList, 'One page of permits and the total count'),
    errors: [400],
  },
  {
    method: 'post',
    path: '/permits/',
    operationId: 'createPermit',
    tag: 'Permits',
    summary: 'Create a draft permit',
    roles: ANY,
    body: createPermit,
    ok: json(res.permit, 'The new permit (status draft, version 1)', 201),
    errors: [403],
  },
  {
    method: 'get',
    path: '/permits/:id/',
    operationId: 'getPermit',
    tag: 'Permits',
    summary: 'Read a permit',
    roles: ANY,
    params: PERMIT_ID,
    ok: json(res.permit, 'The permit'),
    errors: [404],
  },
  {
    method: 'patch',
    path: '/permits/:id/',
    operationId: 'updatePermit',
    tag: 'Permits',
    summary: 'Edit a permit',
    roles: 'The creator (drafts), supervisors and managers of the permit’s project',
    description: 'A stale `version` is a 409 whose error details carry `server_version` and `server_state` (the permit as stored).',
    params: PERMIT_ID,
    body: patchPermit,
    ok: json(res.permit, 'The permit after the edit'),
    errors: [403, 404, 409],
  },
  {
    method: 'post',
    path: '/permits/:id/transition/',
    operationId: 'transitionPermit',
    tag: 'Permits',
    summary: 'Move a permit to another status',
    roles:
      'Depends on the transition (SPEC §2): creator to submit/withdraw, supervisor or manager (or the assigned verifier) to verify/reject, manager (or the assigned approver) to approve, creator or manager to cancel',
    description: 'Transitions outside the status machine are refused with 400 failed_precondition; gates (isolation verified, closeout complete) likewise.',
    params: PERMIT_ID,
    body: transition,
    ok: json(res.permit, 'The permit in its new status'),
    errors: [403, 404, 409],
  },
  {
    method: 'get',
    path: '/permits/:id/isolation/',
    operationId: 'getIsolation',
    tag: 'Isolation',
    summary: 'Isolation points and summary',
    roles: ANY,
    params: PERMIT_ID,
    ok: json(res.isolation, 'Points and summary'),
    errors: [404],
  },
  {
    method: 'post',
    path: '/permits/:id/assign_isolation/',
    operationId: 'assignIsolation',
    tag: 'Isolation',
    summary: 'Add isolation points',
    roles: 'The creator, supervisors and managers of the permit’s project',
    params: PERMIT_ID,
    body: assignIsolation,
    ok: json(res.isolation, 'All points of the permit and the summary', 201),
    errors: [403, 404, 409],
  },
  {
    method: 'post',
    path: '/permits/:id/update_isolation/',
    operationId: 'updateIsolation',
    tag: 'Isolation',
    summary: 'Isolate, verify or de-isolate a point',
    roles: 'Supervisors and managers of the permit’s project',
    description: 'Status only moves forward (assigned → isolated → verified → deisolated); verify needs isolated.',
    params: PERMIT_ID,
    body: updateIsolation,
    ok: json(res.isolationPoint, 'The point after the action'),
    errors: [403, 404, 409],
  },
  {
    method: 'get',
    path: '/permits/:id/closeout/',
    operationId: 'getCloseout',
    tag: 'Closeout',
    summary: 'Closeout checklist',
    roles: ANY,
    params: PERMIT_ID,
    ok: json(res.closeout, 'The closeout'),
    errors: [404],
  },
  {
    method: 'post',
    path: '/permits/:id/update_closeout/',
    operationId: 'updateCloseout',
    tag: 'Closeout',
    summary: 'Update closeout items and remarks',
    roles: 'Supervisors and managers of the permit’s project',
    params: PERMIT_ID,
    body: updateCloseout,
    ok: json(res.closeout, 'The closeout after the update'),
    errors: [403, 404, 409],
  },
  {
    method: 'post',
    path: '/permits/:id/complete_closeout/',
    operationId: 'completeCloseout',
    tag: 'Closeout',
    summary: 'Complete the closeout',
    roles: 'Supervisors and managers of the permit’s project',
    description: 'Every required item must be done, else 400 listing the missing labels.',
    params: PERMIT_ID,
    body: empty,
    ok: json(res.closeout, 'The completed closeout'),
    errors: [403, 404, 409],
  },
  {
    method: 'get',
    path: '/workflow/my-tasks/',
    operationId: 'myTasks',
    tag: 'Workflow',
    summary: 'Pending steps assigned to the caller',
    roles: ANY,
    ok: json(z.array(res.workflowStep), 'The pending steps'),
  },
  {
    method: 'post',
    path: '/sync-offline-data/',
    operationId: 'syncOfflineData',
    tag: 'Sync',
    summary: 'Offline sync',
    roles: 'worker, supervisor, manager or service; each change is checked against the caller’s projects',
    description: 'Each change lands in exactly one of applied, conflicts, rejected (SPEC §5); replays are idempotent.',
    scope: 'ptw_sync',
    body: syncRequest,
    ok: json(res.syncResponse, 'The outcome of every change'),
  },
  {
    method: 'post',
    path: '/permits/bulk_export_pdf/',
    operationId: 'bulkExportPdf',
    tag: 'Exports',
    summary: 'ZIP of one PDF per permit',
    roles: 'Managers and service tokens',
    description: 'Only the caller’s projects are exported (other ids are dropped); more than the export limit → 400; nothing left → 404.',
    scope: 'ptw_bulk_export',
    query: z.object(permitFilters),
    body: exportRequest,
    ok: { status: 200, binary: 'application/zip', description: 'permits_bulk_YYYYmmdd_HHMMSS.zip with PTW_<number>.pdf per permit' },
    errors: [403, 404],
  },
  {
    method: 'post',
    path: '/permits/bulk_export_excel/',
    operationId: 'bulkExportExcel',
    tag: 'Exports',
    summary: 'XLSX of the permits',
    roles: 'Managers and service tokens',
    description: 'Sheet Permits; `detailed` adds Isolation Points, Closeout and Audit. Scoping and limits as the PDF export.',
    scope: 'ptw_bulk_export',
    query: z.object(permitFilters),
    body: exportRequest,
    ok: { status: 200, binary: 'application/vnd.openxmlformats-officedocument.spreadsheetml.sheet', description: 'The workbook' },
    errors: [403, 404],
  },
  {
    method: 'get',
    path: '/permits/kpis/',
    operationId: 'getKpis',
    tag: 'Permits',
    summary: 'KPIs over the caller’s projects',
    roles: 'Managers and service tokens',
    scope: 'ptw_kpi',
    query: z.object({ project: z.string().optional().describe('Restrict to one of the caller’s projects (another project is 404)') }),
    ok: json(res.kpis, 'Counts, overdue figures and the top lists'),
    errors: [400, 403, 404],
  },
  {
    method: 'get',
    path: '/notifications/',
    operationId: 'listNotifications',
    tag: 'Notifications',
    summary: 'The caller’s notifications',
    roles: ANY,
    scope: 'ptw_notifications',
    query: z.object({ unread: z.enum(['true', 'false']).optional().describe('Only unread ones when true'), ...pageQuery }),
    ok: json(res.notificationList, 'One page, newest first'),
    errors: [400],
  },
  {
    method: 'get',
    path: '/notifications/unread-count/',
    operationId: 'unreadNotificationCount',
    tag: 'Notifications',
    summary: 'How many are unread',
    roles: ANY,
    scope: 'ptw_notifications',
    ok: json(res.countResponse, 'The unread count'),
  },
  {
    method: 'post',
    path: '/notifications/:id/read/',
    operationId: 'markNotificationRead',
    tag: 'Notifications',
    summary: 'Mark one read',
    roles: 'The notification’s recipient',
    scope: 'ptw_notifications',
    params: { id: 'Notification id; another user’s is 404' },
    ok: json(res.notification, 'The notification, read'),
    errors: [404],
  },
  {
    method: 'post',
    path: '/notifications/mark-all-read/',
    operationId: 'markAllNotificationsRead',
    tag: 'Notifications',
    summary: 'Mark all read',
    roles: ANY,
    scope: 'ptw_notifications',
    ok: json(res.markAllRead, 'How many changed'),
  },
  {
    method: 'get',
    path: '/permits/health/',
    operationId: 'getHealth',
    tag: 'Operations',
    summary: 'System health (SPEC §8)',
    roles: MANAGE,
    description: 'A service that cannot be asked is reported in `services` and sets `degraded`; still 200.',
    ok: json(res.health, 'Health figures'),
    errors: [403],
  },
  {
    method: 'get',
    path: '/permits/health/history/',
    operationId: 'getHealthHistory',
    tag: 'Operations',
    summary: 'Sync outcomes and exports hour by hour',
    roles: MANAGE,
    description: 'Cached up to 60 s by the health service. A peer that cannot be asked reads 0 and sets `degraded`; still 200.',
    query: z.object({
      hours: z
        .string()
        .regex(/^([1-9]|1\d|2[0-4])$/)
        .optional()
        .describe('How many hours back, 1-24 (default 12)'),
    }),
    ok: json(res.healthHistory, 'One bucket per hour'),
    errors: [400, 403],
  },
  {
    method: 'get',
    path: '/admin/gateway/',
    operationId: 'getGatewayView',
    tag: 'Operations',
    summary: 'This gateway replica’s view (admin console)',
    roles: MANAGE,
    description: 'Redis, the services’ gRPC health and the store as this replica sees them, and the 429s it answered in the last hour; another replica may answer differently.',
    ok: json(res.gatewayView, 'The replica’s view'),
    errors: [403],
  },
  {
    method: 'get',
    path: '/jobs/',
    operationId: 'listJobs',
    tag: 'Operations',
    summary: 'Jobs and their recent runs',
    roles: MANAGE,
    ok: json(res.jobs, 'Job states and recent runs'),
    errors: [403],
  },
  {
    method: 'post',
    path: '/jobs/:name/run/',
    operationId: 'runJob',
    tag: 'Operations',
    summary: 'Run a job now',
    roles: MANAGE,
    params: { name: 'Job name, e.g. auto_expire_permits' },
    ok: json(res.jobRun, 'The finished run'),
    errors: [403, 404, 409],
  },
  {
    method: 'get',
    path: '/throttle-status/',
    operationId: 'throttleStatus',
    tag: 'Operations',
    summary: 'A user’s current throttle usage',
    roles: MANAGE,
    query: z.object({ user: z.string().optional().describe('User id (default: the caller)') }),
    ok: json(res.throttleStatus, 'Usage per scope'),
    errors: [400, 403],
  },
];
