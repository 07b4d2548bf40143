/**
 * `make up` (libs/devstore/dist/up.js) told to stop while it is still starting: every process it has
 * started stops with it. A signal sent to it alone (a supervisor's SIGTERM, `kill -INT`) used to kill it
 * at once during start-up and seeding, leaving the services running on the default ports.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { canConnect } from '@ptw/devstore';
import { DEFAULT_PORTS } from '../../libs/devstore/src/stack';
import { spawnMakeUp, TEST_AUTH } from '../support/stack';

jest.setTimeout(240_000);

const ports = Object.values(DEFAULT_PORTS).flatMap((p) => [p.grpc, p.metrics, p.http].filter((x): x is number => x !== undefined));
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function takenPorts(): Promise<number[]> {
  const taken = await Promise.all(ports.map(async (p) => ((await canConnect('127.0.0.1', p, 300)) ? p : 0)));
  return taken.filter(Boolean);
}

let logDir: string;
beforeAll(() => {
  logDir = fs.mkdtempSync(path.join(os.tmpdir(), 'ptw-make-up-stop-'));
});
afterAll(() => fs.rmSync(logDir, { recursive: true, force: true }));

it('when make up gets SIGTERM while its services are starting, then it stops every one of them and exits 0', async () => {
  const taken = await takenPorts();
  if (taken.length > 0) {
    process.stdout.write(`make-up-stop: skipped, the default ports ${taken.join(', ')} are in use (a developer's \`make up\`?)\n`);
    return;
  }
  const mongoUrl = process.env.MONGO_URL ? `${process.env.MONGO_URL.replace(/\/[^/]*$/, '')}/ptw_make_up_stop_${Date.now()}` : undefined;
  const env: Record<string, string> = { ...(process.env as Record<string, string>), ...TEST_AUTH, LOG_DIR: logDir, ...(mongoUrl ? { MONGO_URL: mongoUrl } : {}) };
  const up = spawnMakeUp(env);
  try {
    // A service is listening and make up has not printed its tokens: the stack is still starting
    // (the four services start together, the gateway once they listen) or seeding.
    const until = Date.now() + 120_000;
    while (!(await canConnect('127.0.0.1', DEFAULT_PORTS.sync.grpc!, 200))) {
      if (Date.now() > until || up.child.exitCode !== null) throw new Error(`make up did not start its first service:\n${up.output()}`);
      await sleep(50);
    }
    expect(up.output()).not.toContain('Demo tokens');
    up.child.kill('SIGTERM');
    expect(await up.exited).toBe(0);
    // Nothing it started is left listening (nor starts listening later).
    await sleep(2000);
    expect(await takenPorts()).toEqual([]);
    expect(up.output()).not.toContain('Demo tokens');
  } finally {
    up.killAll();
  }
});
