import { PassThrough } from 'node:stream';
import { createLogger, sanitizeRecord } from './logger';

function capture() {
  const sink = new PassThrough();
  const lines: Record<string, unknown>[] = [];
  sink.on('data', (d: Buffer) => d.toString().split('\n').filter(Boolean).forEach((l) => lines.push(JSON.parse(l))));
  return { sink, lines };
}

describe('safe-field logger', () => {
  it('when a call site passes unsafe fields, then only allow-listed fields reach the sink', async () => {
    const { sink, lines } = capture();
    const log = createLogger('t', { stdout: false, sink });
    log.info(
      { user_id: 'u1', permit_id: 'p-1', email: 'a@b.c', token: 'eyJ.x.y', data: { signature: 'base64' }, name: 'Jane Doe', duration_ms: 12 },
      'hello',
    );
    await new Promise((r) => setImmediate(r));
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatchObject({ user_id: 'u1', permit_id: 'p-1', duration_ms: 12, msg: 'hello' });
    for (const k of ['email', 'token', 'data']) expect(lines[0]).not.toHaveProperty(k);
    expect(lines[0].name).toBe('t');
  });

  it('when an allow-listed field holds an e-mail address or a long blob, then its value is redacted', () => {
    const out = sanitizeRecord({ device_id: 'jane@example.com', user_id: 'x'.repeat(500), project_id: 'p1' });
    expect(out).toEqual({ device_id: '[redacted]', user_id: '[redacted]', project_id: 'p1' });
  });

  it('when an error is logged, then its message (which may quote input) is dropped and its type kept', () => {
    const err = new TypeError('bad value jane@example.com');
    const out = sanitizeRecord({ err });
    expect(out.error_type).toBe('TypeError');
    expect(JSON.stringify(out)).not.toContain('jane@example.com');
    expect(String(out.stack)).toContain('at ');
  });

  it('when a child logger carries req_id, then every line has it', async () => {
    const { sink, lines } = capture();
    createLogger('t', { stdout: false, sink }).child({ req_id: 'r-1' }).warn({ outcome: 'x' }, 'm');
    await new Promise((r) => setImmediate(r));
    expect(lines[0]).toMatchObject({ req_id: 'r-1', outcome: 'x', level: 40 });
  });
});
