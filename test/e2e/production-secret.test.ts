/**
 * Issue 23 item 11: with NODE_ENV=production no process of the system starts with the development
 * JWT secret that `make up` and the token CLI use (it is in this repository, so anyone could mint
 * tokens with it). Each entry point is started as it is deployed (built `dist/`), and must stop
 * before it opens any port or connection, with one line naming PTW_JWT_SECRET.
 */
import { spawn } from 'node:child_process';
import path from 'node:path';
import { DEV_JWT_SECRET } from '@ptw/common';

jest.setTimeout(60_000);

const ROOT = path.resolve(__dirname, '../..');
const ENTRY_POINTS: [string, string][] = [
  ['gateway', 'gateway/dist/main.js'],
  ['sync', 'services/sync/dist/main.js'],
  ['workflow', 'services/workflow/dist/main.js'],
  ['workflow-jobs', 'services/workflow/dist/jobs/worker.js'],
  ['export', 'services/export/dist/main.js'],
  ['health', 'services/health/dist/main.js'],
  ['token CLI', 'libs/common/dist/auth/token-cli.js'],
];

function run(file: string, env: Record<string, string>, args: string[] = []): Promise<{ code: number | null; stderr: string }> {
  return new Promise((resolve, reject) => {
    // Nothing may be reached if the check failed to stop the process: every address is a closed port.
    const closed = '127.0.0.1:1';
    const child = spawn(process.execPath, [path.join(ROOT, file), ...args], {
      env: {
        PATH: process.env.PATH ?? '',
        MONGO_URL: 'mongodb://127.0.0.1:1/ptw',
        REDIS_URL: 'redis://127.0.0.1:1',
        PTW_SYNC_ADDR: closed,
        PTW_WORKFLOW_ADDR: closed,
        PTW_EXPORT_ADDR: closed,
        PTW_HEALTH_ADDR: closed,
        GATEWAY_PORT: '0',
        OTEL_SDK_DISABLED: 'true',
        LOG_DIR: path.join(ROOT, 'logs'),
        ...env,
      },
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    let stderr = '';
    child.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
    const timer = setTimeout(() => child.kill('SIGKILL'), 20_000);
    child.once('error', reject);
    child.once('exit', (code) => {
      clearTimeout(timer);
      resolve({ code, stderr });
    });
  });
}

describe('the development secret in production', () => {
  it.each(ENTRY_POINTS)('when %s starts with NODE_ENV=production and the development secret, then it stops at once naming PTW_JWT_SECRET', async (_name, file) => {
    const args = file.includes('token-cli') ? ['--user', 'u1', '--role', 'manager', '--project', 'p1'] : [];
    const { code, stderr } = await run(file, { NODE_ENV: 'production', PTW_JWT_SECRET: DEV_JWT_SECRET }, args);
    // runMain exits 1, the token CLI 2; killed (null) would mean it started.
    expect([1, 2]).toContain(code);
    expect(stderr).toMatch(/PTW_JWT_SECRET: is the published development secret/);
  });

  it('when the token CLI runs in production without a secret, then it refuses too (it would fall back to the development one)', async () => {
    const { code, stderr } = await run('libs/common/dist/auth/token-cli.js', { NODE_ENV: 'production' }, ['--user', 'u1', '--role', 'manager', '--project', 'p1']);
    expect(code).toBe(2);
    expect(stderr).toMatch(/PTW_JWT_SECRET: is the published development secret/);
  });
});
