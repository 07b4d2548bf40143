/**
 * Request schemas of the HTTP API: the routes validate with these very objects and the OpenAPI
 * document is generated from them, so the two cannot disagree.
 */
import { z } from 'zod';

export const transitionBody = z.object({ status: z.string().min(1).max(40), comments: z.string().max(2000).default('') }).strict();
export const updateIsolationBody = z
  .object({
    point_id: z.string().min(1).max(64),
    action: z.enum(['isolate', 'verify', 'deisolate']),
    lock_ids: z.array(z.string().min(1).max(100)).max(50).default([]),
    notes: z.string().max(2000).default(''),
  })
  .strict();
const pointBody = z.object({ name: z.string(), energy_type: z.string(), required: z.boolean().default(true), lock_ids: z.array(z.string()).default([]) }).strict();
export const assignIsolationBody = z.union([z.object({ points: z.array(pointBody).min(1).max(100) }).strict(), pointBody]);
export const updateCloseoutBody = z
  .object({
    checklist: z.record(z.string().max(100), z.object({ done: z.boolean().optional(), comments: z.string().max(2000).optional() }).strict()).default({}),
    remarks: z.string().max(5000).optional(),
  })
  .strict();
export const versionBody = z
  .object({
    version: z
      .number()
      .int('expected an integer')
      .min(1)
      .max(2 ** 31 - 1, 'at most 2147483647 (int32)'),
  })
  .loose();
export const emptyBody = z.object({}).strict();

export const SYNC_MAX_BYTES = 1024 * 1024;
export const SYNC_MAX_CHANGES = 500;

export const syncEnvelope = z
  .object({
    device_id: z.string().regex(/^[A-Za-z0-9_.:-]{1,128}$/, 'expected 1-128 letters, digits or _.:-'),
    client_time: z.string().max(40).optional(),
    changes: z.array(z.unknown()).max(SYNC_MAX_CHANGES, `at most ${SYNC_MAX_CHANGES} changes per request`),
  })
  .strict();

export const syncChange = z
  .object({
    entity: z.string().max(40),
    op: z.string().max(40),
    offline_id: z.string().max(128),
    server_id: z.string().max(64).nullish(),
    client_version: z
      .number()
      .int('expected an integer')
      .min(0)
      .max(2 ** 31 - 1)
      .nullish(),
    data: z.record(z.string(), z.unknown()).default({}),
  })
  .strict();

export const exportBody = z
  .object({
    permit_ids: z.array(z.string().min(1).max(64)).max(10_000).default([]),
    use_filters: z.boolean().default(false),
    detailed: z.boolean().default(false),
  })
  .strict();
