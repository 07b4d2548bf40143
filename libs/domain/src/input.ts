import { parseInput } from '@ptw/common';
import { z } from 'zod';

export { parseInput };

const isoDate = z
  .string()
  .max(40)
  .refine((s) => /^\d{4}-\d{2}-\d{2}(T\d{2}:\d{2}(:\d{2}(\.\d{1,9})?)?(Z|[+-]\d{2}:?\d{2})?)?$/.test(s) && !Number.isNaN(Date.parse(s)), 'expected an ISO 8601 date-time')
  .transform((s) => new Date(s));

const text = (max: number) => z.string().max(max, `at most ${max} characters`);
const id = z
  .string()
  .min(1)
  .max(128)
  .regex(/^[A-Za-z0-9_.:@-]+$/, 'expected an identifier');

/** The client-settable permit fields of SPEC §2 (all optional here; create requires some). */
export const permitFieldsSchema = z
  .object({
    project_id: id,
    permit_type_id: id,
    title: text(200).min(1, 'must not be empty'),
    description: text(5000),
    location: text(500),
    priority: z.enum(['low', 'medium', 'high', 'critical']),
    probability: z.number().int('expected an integer').min(1).max(5),
    severity: z.number().int('expected an integer').min(1).max(5),
    control_measures: text(5000),
    ppe_requirements: z.array(text(100).min(1)).max(50),
    safety_checklist: z.record(text(100).min(1), z.boolean()).refine((o) => Object.keys(o).length <= 100, 'at most 100 items'),
    planned_start_time: isoDate,
    planned_end_time: isoDate,
    verifier_id: id.nullable(),
    approver_id: id.nullable(),
  })
  .partial()
  .strict();

export type PermitFields = z.infer<typeof permitFieldsSchema>;

export const createPermitSchema = permitFieldsSchema
  .refine((d) => d.title !== undefined, { message: 'required', path: ['title'] })
  .refine((d) => d.permit_type_id !== undefined, {
    message: 'required',
    path: ['permit_type_id'],
  });

/** Fields that may be changed after creation (project and type are fixed). */
export const updatePermitSchema = permitFieldsSchema.omit({ project_id: true, permit_type_id: true }).strict();

export const isolationPointInputSchema = z
  .object({
    name: text(200).min(1, 'must not be empty'),
    energy_type: text(50).min(1, 'must not be empty'),
    required: z.boolean().default(true),
    lock_ids: z.array(text(100).min(1)).max(50).default([]),
  })
  .strict();

export const isolationUpdateSchema = z
  .object({
    point_id: z.string().min(1).max(64),
    action: z.enum(['isolate', 'verify', 'deisolate']),
    lock_ids: z.array(text(100).min(1)).max(50).optional(),
    notes: text(2000).optional(),
  })
  .strict();

export const closeoutUpdateSchema = z
  .object({
    checklist: z.record(text(100), z.object({ done: z.boolean().optional(), comments: text(2000).optional() }).strict()).optional(),
    remarks: text(5000).optional(),
  })
  .strict();

/** Permit list filters (SPEC §4), also used by exports. */
export const permitFilterSchema = z
  .object({
    status: z.array(z.string()).optional(),
    permit_type: z.string().max(128).optional(),
    project: z.string().max(128).optional(),
    created_from: isoDate.optional(),
    created_to: isoDate.optional(),
    planned_end_from: isoDate.optional(),
    planned_end_to: isoDate.optional(),
    q: text(100).optional(),
  })
  .strict();
