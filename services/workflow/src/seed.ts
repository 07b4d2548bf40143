#!/usr/bin/env node
/**
 * Seeds demo data when the store has none: projects p1/p2, one user per role, permit types with
 * closeout items. Safe to run again (upserts by id).
 */
import { baseConfigSchema, createLogger, loadConfig } from '@ptw/common';
import { connectMongo, ensureIndexes, registerModels } from '@ptw/db';

export const DEMO_PROJECTS = [
  { _id: 'p1', name: 'North Refinery Turnaround' },
  { _id: 'p2', name: 'Harbour Tank Farm' },
];

export const DEMO_USERS = [
  { _id: 'u-worker', name: 'Demo Worker', email: 'worker@example.test', role: 'worker', project_ids: ['p1'] },
  { _id: 'u-supervisor', name: 'Demo Supervisor', email: 'supervisor@example.test', role: 'supervisor', project_ids: ['p1'] },
  { _id: 'u-manager', name: 'Demo Manager', email: 'manager@example.test', role: 'manager', project_ids: ['p1', 'p2'] },
  { _id: 'u-worker-p2', name: 'Demo Worker P2', email: 'worker2@example.test', role: 'worker', project_ids: ['p2'] },
];

export const DEMO_PERMIT_TYPES = [
  {
    _id: 'hot-work',
    name: 'Hot Work',
    category: 'hot_work',
    risk_level: 'high',
    validity_hours: 8,
    escalation_hours: 4,
    requires_isolation: false,
    closeout_items: [
      { key: 'area_cleaned', label: 'Work area cleaned', required: true },
      { key: 'fire_watch_done', label: 'Fire watch completed', required: true },
      { key: 'photos', label: 'Photos attached', required: false },
    ],
  },
  {
    _id: 'electrical-isolation',
    name: 'Electrical Isolation',
    category: 'electrical',
    risk_level: 'extreme',
    validity_hours: 12,
    escalation_hours: 4,
    requires_isolation: true,
    closeout_items: [
      { key: 'locks_removed', label: 'All locks removed', required: true },
      { key: 'equipment_tested', label: 'Equipment tested', required: true },
    ],
  },
  {
    _id: 'confined-space',
    name: 'Confined Space Entry',
    category: 'confined_space',
    risk_level: 'high',
    validity_hours: 8,
    escalation_hours: 2,
    requires_isolation: true,
    closeout_items: [
      { key: 'entrants_out', label: 'All entrants accounted for', required: true },
      { key: 'gas_test_logged', label: 'Gas test logged', required: true },
    ],
  },
];

async function main(): Promise<void> {
  const config = loadConfig(baseConfigSchema.pick({ MONGO_URL: true, LOG_LEVEL: true }));
  const log = createLogger('seed', { level: config.LOG_LEVEL });
  const conn = await connectMongo(config.MONGO_URL, log, { appName: 'ptw-seed' });
  const m = registerModels(conn);
  await ensureIndexes(conn);
  const upsert = <T extends { _id: string }>(model: { bulkWrite(ops: unknown[]): Promise<unknown> }, docs: T[]) =>
    model.bulkWrite(docs.map((d) => ({ updateOne: { filter: { _id: d._id }, update: { $set: d }, upsert: true } })));
  await upsert(m.Project, DEMO_PROJECTS);
  await upsert(m.User, DEMO_USERS);
  await upsert(m.PermitType, DEMO_PERMIT_TYPES.map((t) => ({ ...t, active: true })));
  process.stdout.write(`seeded ${DEMO_PROJECTS.length} projects, ${DEMO_USERS.length} users, ${DEMO_PERMIT_TYPES.length} permit types\n`);
  await conn.close();
}

if (require.main === module) {
  main().catch((err: Error) => {
    process.stderr.write(`seed: ${err.message}\n`);
    process.exit(1);
  });
}
