#!/usr/bin/env node
/**
 * Mints a development token: `npm run token -- --user u1 --role manager --project p1 [--project p2]
 * [--ttl 1h]`. The token is printed alone on the last line.
 */
import { parseArgs } from 'node:util';
import { baseConfigSchema, loadConfig } from '../config';
import { ROLES, type Role } from './principal';
import { mintToken, parseTtl } from './tokens';
import { DEV_JWT_SECRET } from './dev';

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      user: { type: 'string' },
      role: { type: 'string' },
      project: { type: 'string', multiple: true, default: [] },
      ttl: { type: 'string', default: '1h' },
    },
    strict: true,
  });
  if (!values.user) throw new Error('--user is required');
  if (!values.role || !(ROLES as readonly string[]).includes(values.role)) {
    throw new Error(`--role must be one of ${ROLES.join(', ')}`);
  }
  const cfg = loadConfig(baseConfigSchema, { PTW_JWT_SECRET: DEV_JWT_SECRET, ...process.env });
  const token = await mintToken(cfg, {
    user: values.user,
    role: values.role as Role,
    projects: values.project ?? [],
    ttlSeconds: parseTtl(values.ttl ?? '1h'),
  });
  process.stdout.write(`${token}\n`);
}

main().catch((err: Error) => {
  process.stderr.write(`token: ${err.message}\n`);
  process.exit(2);
});
