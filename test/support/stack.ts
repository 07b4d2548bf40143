import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import Redis from 'ioredis';
import { DEV_JWT_SECRET, mintToken, type Role } from '@ptw/common';
import { REPO_ROOT, startStack, type Stack } from '../../libs/devstore/src/stack';

export const TEST_AUTH = { PTW_JWT_SECRET: DEV_JWT_SECRET, PTW_JWT_ISSUER: 'ptw-dev', PTW_JWT_AUDIENCE: 'ptw-api' };

/**
 * Starts the real system as processes (built `dist/`), on free ports, against the store of
 * MONGO_URL or a fresh local FerretDB, and Redis; seeds the demo data.
 */
export async function startTestStack(name: string, env: Record<string, string> = {}, opts: { redisUrl?: string } = {}): Promise<Stack & { logDir: string }> {
  const logDir = fs.mkdtempSync(path.join(os.tmpdir(), `ptw-${name}-`));
  const keyPrefix = `ptw-test:${name}:${process.pid}:${Date.now()}`;
  const stack = await startStack({
    ports: 'free',
    logDir,
    mongoUrl: process.env.MONGO_URL ? `${process.env.MONGO_URL.replace(/\/[^/]*$/, '')}/ptw_${name}_${Date.now()}` : undefined,
    redisUrl: opts.redisUrl ?? process.env.REDIS_URL,
    // The stack's own throttle windows: the demo users these suites use (u-manager…) would otherwise
    // use up the windows of `make up`'s demo users on the same Redis (its exports: 5 an hour).
    env: { PTW_JWT_SECRET: DEV_JWT_SECRET, NODE_ENV: 'test', PTW_THROTTLE_KEY_PREFIX: keyPrefix, ...env },
  });
  const stop = stack.stop.bind(stack);
  // Its windows go with it (the hourly export ones would otherwise stay in Redis for an hour).
  stack.stop = async () => {
    await stop();
    await deleteKeys(stack.redisUrl, `${stack.env.PTW_THROTTLE_KEY_PREFIX}:*`);
  };
  const seed = spawnSync(process.execPath, [path.join(REPO_ROOT, 'services/workflow/dist/seed.js')], { env: stack.env, encoding: 'utf8' });
  if (seed.status !== 0) throw new Error(`seed failed: ${seed.stderr}`);
  return Object.assign(stack, { logDir });
}

/**
 * Deletes the keys matching `pattern` (SCAN, not KEYS: the Redis may be a developer's busy one). Best
 * effort: a suite may have stopped its Redis already, and the keys expire with their windows anyway.
 */
async function deleteKeys(redisUrl: string, pattern: string): Promise<void> {
  const redis = new Redis(redisUrl, { maxRetriesPerRequest: 0, retryStrategy: () => null, connectTimeout: 1000, lazyConnect: true });
  redis.on('error', () => undefined);
  try {
    await redis.connect();
    let cursor = '0';
    do {
      const [next, keys] = await redis.scan(cursor, 'MATCH', pattern, 'COUNT', 1000);
      cursor = next;
      if (keys.length) await redis.del(...keys);
    } while (cursor !== '0');
  } catch {
    // Redis gone: nothing to clean that will not expire by itself.
  } finally {
    redis.disconnect();
  }
}

/** A test's `make up` (libs/devstore/dist/up.js): the process, what it printed so far, its exit. */
export interface MakeUpRun {
  child: ChildProcess;
  /** stdout and stderr so far, interleaved. */
  output(): string;
  exited: Promise<number | null>;
  /** SIGKILL to its whole process group (nothing when it is gone): for a test's `finally`. */
  killAll(): void;
}

/**
 * Starts `make up` with `env` in a process group of its own, so that when a test fails everything it
 * started goes with it (killing make up alone would leave its services on the default ports, and the
 * next suites would skip).
 */
export function spawnMakeUp(env: Record<string, string>): MakeUpRun {
  const child = spawn(process.execPath, [path.join(REPO_ROOT, 'libs/devstore/dist/up.js')], { env, stdio: ['ignore', 'pipe', 'pipe'], detached: true });
  let out = '';
  child.stdout.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr.on('data', (d: Buffer) => (out += d.toString()));
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  return {
    child,
    output: () => out,
    exited,
    killAll: () => {
      if (child.pid === undefined) return;
      try {
        process.kill(-child.pid, 'SIGKILL');
      } catch {
        // No such group left.
      }
    },
  };
}

/** A development token for the test stack. */
export function token(user: string, role: Role, projects: string[], ttlSeconds = 600): Promise<string> {
  return mintToken(TEST_AUTH, { user, role, projects, ttlSeconds });
}

/** Reads a service's log file as parsed lines. */
export function readLog(logDir: string, service: string): Record<string, unknown>[] {
  const file = path.join(logDir, `${service}.log`);
  if (!fs.existsSync(file)) return [];
  return fs
    .readFileSync(file, 'utf8')
    .split('\n')
    .filter(Boolean)
    .map((l) => JSON.parse(l) as Record<string, unknown>);
}

/** Polls `fn` until it returns a truthy value or `timeoutMs` passes. */
export async function eventually<T>(fn: () => T | Promise<T>, timeoutMs = 5000): Promise<T> {
  const until = Date.now() + timeoutMs;
  let last: T = await fn();
  while (!last && Date.now() < until) {
    await new Promise((r) => setTimeout(r, 100));
    last = await fn();
  }
  return last;
}
