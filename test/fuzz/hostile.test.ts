/**
 * Hostile input for every route and raw hostile gRPC messages for every service, generated with
 * fast-check against the real system: never a 5xx, never a crash, never a write outside the
 * caller's project. Prints what it sent and what it counted.
 */
import { credentials, makeGenericClientConstructor, Metadata, type ServiceError } from '@grpc/grpc-js';
import fc from 'fast-check';
import mongoose, { type Connection } from 'mongoose';
import { checkHealth } from '@ptw/common';
import { registerModels, type Models } from '@ptw/db';
import { exportPb, healthPb, syncPb, workflowPb } from '@ptw/proto';
import { startTestStack, token } from '../support/stack';
import type { Stack } from '../../libs/devstore/src/stack';

jest.setTimeout(300_000);

let stack: Stack;
let conn: Connection;
let m: Models;
let foreignPermitId: string;
let ownPermitId: string;
const RUNS = Number(process.env.PTW_FUZZ_RUNS ?? 60);

beforeAll(async () => {
  stack = await startTestStack('fuzz', {
    PTW_THROTTLE_SYNC: '100000/min',
    PTW_THROTTLE_BULK_EXPORT: '100000/hour',
    PTW_THROTTLE_KPI: '100000/min',
    PTW_THROTTLE_NOTIFICATIONS: '100000/min',
  });
  conn = await mongoose.createConnection(stack.mongoUrl).asPromise();
  m = registerModels(conn);
  const [own, foreign] = await m.Permit.create([
    {
      permit_number: 'PTW-2026-800001',
      project_id: 'p1',
      permit_type_id: 'hot-work',
      title: 'own',
      status: 'active',
      created_by: 'u-worker',
      version: 1,
      created_at: new Date(),
      updated_at: new Date(),
    },
    {
      permit_number: 'PTW-2026-800002',
      project_id: 'p2',
      permit_type_id: 'hot-work',
      title: 'foreign',
      status: 'draft',
      created_by: 'u-other',
      version: 1,
      created_at: new Date(),
      updated_at: new Date(),
    },
  ]);
  ownPermitId = String(own._id);
  foreignPermitId = String(foreign._id);
});

afterAll(async () => {
  await conn?.close();
  await stack?.stop();
});

const hostileString = fc.oneof(
  fc.string({ maxLength: 40 }),
  fc.string({ unit: 'binary', maxLength: 40 }),
  fc.constantFrom(
    '{"$gt": ""}',
    '$where',
    '../../etc/passwd',
    "'; DROP TABLE permits; --",
    '\u0000',
    '\uD800',
    '🦺'.repeat(50),
    'ffffffffffffffffffffffff',
    'a'.repeat(5000),
    '<script>alert(1)</script>',
  ),
);
const hostileValue: fc.Arbitrary<unknown> = fc.letrec((tie) => ({
  value: fc.oneof(
    { depthSize: 'small', withCrossShrink: true },
    hostileString,
    fc.integer(),
    fc.double(),
    fc.constantFrom(-1, 0, 2 ** 53, -(2 ** 63), 1e308, NaN, Infinity, null, true, false),
    fc.array(tie('value'), { maxLength: 4 }),
    fc.dictionary(fc.oneof(hostileString, fc.constantFrom('$gt', '$ne', '__proto__', 'constructor', 'version', 'status', 'project_id')), tie('value'), { maxKeys: 4 }),
  ),
})).value;
const deep = (n: number): unknown => (n === 0 ? {} : { a: deep(n - 1) });

const routes: [string, (id: string) => string][] = [
  ['GET', () => '/permit-types/'],
  ['GET', () => '/permits/'],
  ['POST', () => '/permits/'],
  ['GET', (id) => `/permits/${id}/`],
  ['PATCH', (id) => `/permits/${id}/`],
  ['POST', (id) => `/permits/${id}/transition/`],
  ['GET', (id) => `/permits/${id}/isolation/`],
  ['POST', (id) => `/permits/${id}/assign_isolation/`],
  ['POST', (id) => `/permits/${id}/update_isolation/`],
  ['GET', (id) => `/permits/${id}/closeout/`],
  ['POST', (id) => `/permits/${id}/update_closeout/`],
  ['POST', (id) => `/permits/${id}/complete_closeout/`],
  ['GET', () => '/workflow/my-tasks/'],
  ['POST', () => '/sync-offline-data/'],
  ['POST', () => '/permits/bulk_export_pdf/'],
  ['POST', () => '/permits/bulk_export_excel/'],
  ['GET', () => '/permits/kpis/'],
  ['GET', () => '/notifications/'],
  ['GET', () => '/notifications/unread-count/'],
  ['POST', (id) => `/notifications/${id}/read/`],
  ['POST', () => '/notifications/mark-all-read/'],
  ['GET', () => '/permits/health/'],
  ['GET', () => '/permits/health/history/'],
  ['GET', () => '/admin/gateway/'],
  ['GET', () => '/jobs/'],
  ['GET', () => '/throttle-status/'],
];

describe('HTTP', () => {
  it('when every route gets hostile bodies, ids and query strings, then no 5xx and nothing changes in another project', async () => {
    const manager = await token('u-fuzz', 'manager', ['p1']);
    const foreignBefore = JSON.stringify(await m.Permit.findById(foreignPermitId).lean());
    const statuses = new Map<number, number>();
    let sent = 0;
    await fc.assert(
      fc.asyncProperty(
        fc.constantFrom(...routes),
        fc.oneof(
          fc.constantFrom(ownPermitId, foreignPermitId, 'abc', '%7B%22%24gt%22%3A1%7D', '..%2F..', '0'.repeat(24)),
          hostileString.map((x) => encodeURIComponent(x.toWellFormed())),
        ),
        fc.oneof(
          hostileValue.map((v) => JSON.stringify(v)),
          fc.constantFrom('{', '{"a":', 'null', '[]', '"str"', JSON.stringify(deep(2000)), JSON.stringify({ device_id: 'd', changes: Array(600).fill({}) })),
          fc
            .record(
              {
                version: hostileValue,
                status: hostileValue,
                permit_ids: hostileValue,
                changes: hostileValue,
                device_id: hostileValue,
                title: hostileValue,
                points: hostileValue,
                checklist: hostileValue,
              },
              { requiredKeys: [] },
            )
            .map((o) => JSON.stringify(o)),
        ),
        fc.dictionary(fc.constantFrom('status', 'page', 'page_size', 'q', 'created_from', 'project', 'user', 'unread'), hostileString, { maxKeys: 3 }),
        async ([method, path], id, body, q) => {
          const qs = new URLSearchParams(q).toString();
          const res = await fetch(`${stack.gatewayUrl}/api/v1/ptw${path(id)}${qs ? `?${qs}` : ''}`, {
            method,
            headers: { authorization: `Bearer ${manager}`, 'content-type': 'application/json' },
            body: method === 'GET' ? undefined : body,
          });
          await res.arrayBuffer();
          sent++;
          statuses.set(res.status, (statuses.get(res.status) ?? 0) + 1);
          expect([method, path(id), res.status < 500]).toEqual([method, path(id), true]);
        },
      ),
      { numRuns: RUNS * 10 },
    );
    process.stdout.write(`fuzz/http: sent ${sent} hostile requests; statuses ${JSON.stringify(Object.fromEntries(statuses))}\n`);
    expect(JSON.stringify(await m.Permit.findById(foreignPermitId).lean())).toBe(foreignBefore);
    expect(await m.Permit.countDocuments({ project_id: { $nin: ['p1', 'p2'] }, created_by: 'u-fuzz' })).toBe(0);
    expect(await m.IsolationPoint.countDocuments({ permit_id: foreignPermitId })).toBe(0);
  });
});

describe('gRPC', () => {
  const services = [
    ['sync', syncPb.SyncServiceService],
    ['workflow', workflowPb.WorkflowServiceService],
    ['export', exportPb.ExportServiceService],
    ['health', healthPb.HealthServiceService],
  ] as const;

  it('when every method of every service gets random bytes as its message, then it answers a status and keeps SERVING', async () => {
    const auth = new Metadata();
    auth.set('authorization', `Bearer ${await token('u-fuzz-grpc', 'manager', ['p1'])}`);
    const codes = new Map<number, number>();
    let sent = 0;
    for (const [name, def] of services) {
      const raw: Record<string, object> = {};
      for (const [method, d] of Object.entries(def)) {
        raw[method] = { ...d, requestSerialize: (b: Buffer) => b, responseDeserialize: (b: Buffer) => b };
      }
      const Client = makeGenericClientConstructor(raw as never, name);
      const client = new Client(stack.env[`PTW_${name.toUpperCase()}_ADDR`], credentials.createInsecure()) as unknown as Record<
        string,
        (...a: unknown[]) => { on(e: string, f: (...a: unknown[]) => void): void }
      >;
      await fc.assert(
        fc.asyncProperty(fc.constantFrom(...Object.keys(def)), fc.uint8Array({ maxLength: 512 }), fc.boolean(), async (method, bytes, withAuth) => {
          const md = withAuth ? auth : new Metadata();
          const isStream = (def as Record<string, { responseStream: boolean }>)[method].responseStream;
          const [code, details] = await new Promise<[number, string]>((resolve) => {
            const deadline = { deadline: new Date(Date.now() + 10_000) };
            if (isStream) {
              const call = client[method](Buffer.from(bytes), md, deadline);
              call.on('data', () => undefined);
              call.on('error', (e) => resolve([(e as ServiceError).code, (e as ServiceError).details]));
              call.on('end', () => resolve([0, '']));
            } else {
              client[method](Buffer.from(bytes), md, deadline, (e: ServiceError | null) => resolve(e ? [e.code, e.details] : [0, '']));
            }
          });
          sent++;
          codes.set(code, (codes.get(code) ?? 0) + 1);
          // Bytes that are not a protobuf message are refused by grpc-js itself (INTERNAL "Error
          // deserializing request", as the gRPC spec has it); an INTERNAL from a handler ("Internal
          // error") or UNKNOWN would mean an unhandled error in our code.
          const handlerFailure = code === 2 || (code === 13 && details !== 'Error deserializing request');
          expect([name, method, details, handlerFailure]).toEqual([name, method, details, false]);
        }),
        { numRuns: RUNS },
      );
      (client as unknown as { close(): void }).close();
      expect(await checkHealth(stack.env[`PTW_${name.toUpperCase()}_ADDR`], '')).toBe('SERVING');
    }
    process.stdout.write(`fuzz/grpc: sent ${sent} random messages; status codes ${JSON.stringify(Object.fromEntries(codes))}\n`);
    for (const [name, child] of Object.entries(stack.procs)) expect([name, child.exitCode]).toEqual([name, null]);
  });
});
