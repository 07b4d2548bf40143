import { z } from 'zod';
import { AppError } from './errors';
import { capDetails, MAX_DETAILS_BYTES } from './grpc/server';
import { MAX_REPORTED_ERRORS, parseInput, storableIssue } from './validation';

const schema = z.object({ title: z.string().max(10), tags: z.array(z.string()).optional(), checklist: z.record(z.string(), z.boolean()).optional() }).strict();

function refusal(data: unknown): { message: string; details: Record<string, unknown> } {
  try {
    parseInput(schema, data);
  } catch (err) {
    if (err instanceof AppError) return { message: err.message, details: err.details as Record<string, unknown> };
    throw err;
  }
  throw new Error('accepted');
}

describe('input the store cannot hold', () => {
  it.each([
    [{ title: 'a\u0000b' }, 'title'],
    [{ title: 'ok', tags: ['x', 'y\u0000'] }, 'tags.1'],
    [{ title: 'ok', checklist: { 'gas.test': true } }, 'checklist.gas.test'],
    [{ title: 'ok', checklist: { $where: true } }, 'checklist.$where'],
    [{ title: 'ok', checklist: { 'a\u0000': true } }, 'checklist'],
  ])('when %j is parsed, then it is refused naming %s before the schema runs', (data, field) => {
    const r = refusal(data);
    expect(r.details.field).toBe(field);
    expect(r.message.startsWith(`${field}: `)).toBe(true);
    expect(r.message).not.toContain('\u0000');
  });

  it('when strings carry dots, dollars and pairs of surrogates in values, then they are storable', () => {
    expect(storableIssue({ a: 'x.y $z 😀', b: ['1.5'] })).toBeUndefined();
  });

  it('when a string or a key holds a lone surrogate, then it is refused (the store would replace it, merging keys)', () => {
    expect(storableIssue({ title: 'a\ud800b' })).toEqual({ field: 'title', message: expect.stringMatching(/lone surrogate/) });
    expect(storableIssue({ checklist: { '\udfff': true } })).toEqual({ field: 'checklist', message: expect.stringMatching(/lone surrogate/) });
  });

  it('when a deep or wide object is checked, then it finishes without recursion limits', () => {
    let deep: Record<string, unknown> = { leaf: 'x\u0000' };
    for (let i = 0; i < 50_000; i++) deep = { d: deep };
    expect(storableIssue(deep)?.message).toMatch(/NUL/);
  });
});

describe('answers stay small', () => {
  it('when a body has 3,000 unknown fields, then the 400 lists 20 of them and says how many there were', () => {
    const data: Record<string, unknown> = { title: 'ok' };
    for (let i = 0; i < 3000; i++) data[`f${i}`] = 1;
    const r = refusal(data);
    expect(r.details.errors).toHaveLength(MAX_REPORTED_ERRORS);
    expect(r.details).toMatchObject({ truncated: true, error_count: 3000 });
    expect(JSON.stringify(r.details).length).toBeLessThan(4096);
  });

  it('when details exceed the cap, then a server state is reduced to id, version and status, and marked truncated', () => {
    const big = { server_version: 3, server_state: { id: 'x', version: 3, status: 'draft', description: '漢'.repeat(20_000) } };
    const capped = capDetails(big) as Record<string, unknown>;
    expect(capped).toEqual({ server_version: 3, server_state: { id: 'x', version: 3, status: 'draft' }, truncated: true });
    expect(Buffer.byteLength(JSON.stringify(capDetails({ field: 'x', errors: Array.from({ length: 5000 }, (_, i) => ({ field: `f${i}`, message: 'unknown field' })) })))).toBeLessThanOrEqual(
      MAX_DETAILS_BYTES,
    );
    const small = { field: 'title' };
    expect(capDetails(small)).toBe(small);
  });
});
