/**
 * Imported first by every process entry point (`import '@ptw/common/dist/tracing-register'`), before
 * anything loads http, Koa, gRPC, the store driver, ioredis or bunyan: the instrumentations patch
 * those modules as they are required. The service name is the entry's package without its scope
 * (`@ptw/sync` → `sync`), followed by the entry file's name unless it is `main`
 * (`workflow-worker`); `OTEL_SERVICE_NAME` overrides it.
 */
import fs from 'node:fs';
import path from 'node:path';
import { startTracing } from './tracing-sdk';

function entryServiceName(): string {
  const entry = require.main?.filename;
  if (!entry) return 'ptw';
  const base = path.basename(entry, path.extname(entry));
  for (let dir = path.dirname(entry); dir !== path.dirname(dir); dir = path.dirname(dir)) {
    const file = path.join(dir, 'package.json');
    if (!fs.existsSync(file)) continue;
    const declared = (JSON.parse(fs.readFileSync(file, 'utf8')) as { name?: unknown }).name;
    const name = (typeof declared === 'string' ? declared : 'ptw').replace(/^@[^/]+\//, '');
    return base === 'main' ? name : `${name}-${base}`;
  }
  return base;
}

startTracing(entryServiceName());
