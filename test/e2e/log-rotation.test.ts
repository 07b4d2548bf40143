/**
 * Log files that do not fill the disk (issue 25 item 7): the real processes with a small
 * LOG_MAX_BYTES keep logging past it, rotate to `<name>.log.1`, `.2`…, and no line is lost — every
 * request's access line (gateway) and call line (workflow) is in exactly one file, in order.
 */
import fs from 'node:fs';
import path from 'node:path';
import { startTestStack, token } from '../support/stack';
import type { Stack } from '../../libs/devstore/src/stack';

jest.setTimeout(180_000);

const REQUESTS = 600;
const CAP = 16 * 1024;
let stack: (Stack & { logDir: string }) | undefined;

afterAll(async () => stack?.stop());

/** Lines of `<name>.log.N` … `.1`, then `<name>.log` (oldest first), and the file names. */
function rotated(dir: string, name: string) {
  const age = (f: string) => (f === `${name}.log` ? 0 : Number(f.slice(`${name}.log.`.length)));
  const files = fs
    .readdirSync(dir)
    .filter((f) => f === `${name}.log` || (f.startsWith(`${name}.log.`) && /^\d+$/.test(f.slice(`${name}.log.`.length))))
    .sort((a, b) => age(b) - age(a));
  const lines = files.flatMap((f) =>
    fs
      .readFileSync(path.join(dir, f), 'utf8')
      .split('\n')
      .filter(Boolean)
      .map((l) => JSON.parse(l) as Record<string, unknown>),
  );
  return { files, lines, sizes: files.map((f) => fs.statSync(path.join(dir, f)).size) };
}

it(`when ${REQUESTS} requests write past LOG_MAX_BYTES=16K, then the gateway and workflow logs rotate, keep logging, and hold every request's line exactly once, in order`, async () => {
  stack = await startTestStack('log-rotation', { LOG_MAX_BYTES: '16K', LOG_MAX_FILES: '1000' });
  const tok = await token('u-rotation', 'worker', ['p1']);
  const run = Date.now().toString(36);
  const ids = Array.from({ length: REQUESTS }, (_, i) => `rot-${run}-${String(i).padStart(4, '0')}`);
  for (const id of ids) {
    const res = await fetch(`${stack.gatewayUrl}/api/v1/ptw/permit-types/`, { headers: { authorization: `Bearer ${tok}`, 'x-request-id': id } });
    expect(res.status).toBe(200);
    await res.arrayBuffer();
  }
  // SIGTERM: every process writes what it holds and closes its files.
  await stack.stop();
  const { logDir } = stack;
  stack = undefined;

  const gateway = rotated(logDir, 'gateway');
  // ~0.3 KB per access line: 600 requests are ~11 caps.
  expect(gateway.files.length).toBeGreaterThan(5);
  expect(gateway.files.at(-2)).toBe('gateway.log.1');
  expect(gateway.files.at(-1)).toBe('gateway.log');
  // A file is rotated after the write (a batch of lines, ≤ 64 KB) that reached the cap.
  for (const size of gateway.sizes) expect(size).toBeLessThan(CAP + 64 * 1024);
  const access = gateway.lines.filter((l) => l.event === 'http_access' && String(l.req_id).startsWith(`rot-${run}-`)).map((l) => l.req_id);
  expect(access).toEqual(ids);
  // The oldest rotated file holds the earliest lines: the gateway's start.
  expect(gateway.lines[0]).toMatchObject({ req_id: 'process' });

  const workflow = rotated(logDir, 'workflow');
  expect(workflow.files.length).toBeGreaterThan(3);
  const calls = workflow.lines.filter((l) => l.event === 'grpc_call' && String(l.req_id).startsWith(`rot-${run}-`)).map((l) => l.req_id);
  expect(calls).toEqual(ids);
});
