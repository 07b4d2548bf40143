#!/usr/bin/env node
/**
 * Seeds demo data when the store has none: projects p1/p2, one user per role, permit types with
 * closeout items. Safe to run again (upserts by id).
 */
import { baseConfigSchema, createLogger, loadConfig } from '@ptw/common';
import { connectMongo, ensureIndexes, registerModels, PERMIT_STATUSES, type Models } from '@ptw/db';
import { createPermit, refreshBlocksOf } from '@ptw/domain';

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

/**
 * Upserts the demo projects, users and permit types; on a store without permits also creates one
 * demo permit in every status (placed directly in that status: demo data, not a workflow run).
 */
export async function seed(m: Models, now = new Date()): Promise<{ permits: number }> {
  const upsert = <T extends { _id: string }>(model: { bulkWrite(ops: unknown[]): Promise<unknown> }, docs: T[]) =>
    model.bulkWrite(docs.map((d) => ({ updateOne: { filter: { _id: d._id }, update: { $set: d }, upsert: true } })));
  await upsert(m.Project, DEMO_PROJECTS);
  await upsert(m.User, DEMO_USERS);
  await upsert(
    m.PermitType,
    DEMO_PERMIT_TYPES.map((t) => ({ ...t, active: true })),
  );
  if ((await m.Permit.estimatedDocumentCount()) > 0) return { permits: 0 };
  const worker = { user_id: 'u-worker', role: 'worker' as const, project_ids: ['p1'] };
  const hour = 3600_000;
  for (const [i, status] of PERMIT_STATUSES.entries()) {
    const p = await createPermit(
      m,
      worker,
      {
        permit_type_id: 'hot-work',
        title: `Demo ${status} permit: weld pump P-10${i} bracket`,
        location: `Unit ${i + 1}`,
        probability: 1 + (i % 5),
        severity: 1 + ((i * 2) % 5),
        ppe_requirements: ['helmet', 'gloves'],
        planned_start_time: new Date(now.getTime() - 2 * hour).toISOString(),
        planned_end_time: new Date(now.getTime() + (i + 1) * hour).toISOString(),
      },
      now,
    );
    const stamps: Record<string, Date> = {};
    if (!['draft', 'cancelled'].includes(status)) stamps.submitted_at = new Date(now.getTime() - hour);
    if (['approved', 'active', 'suspended', 'completed', 'expired'].includes(status)) Object.assign(stamps, { verified_at: now, approved_at: now });
    // A system write, versioned like any other, and its block read again (@ptw/domain status-blocks.ts).
    const moved = await m.Permit.findOneAndUpdate({ _id: p._id }, { $set: { status, ...stamps }, $inc: { version: 1 } }, { new: true }).lean();
    if (moved) await refreshBlocksOf(m, [moved]);
  }
  return { permits: PERMIT_STATUSES.length };
}

async function main(): Promise<void> {
  const config = loadConfig(baseConfigSchema.pick({ MONGO_URL: true, LOG_LEVEL: true }));
  const log = createLogger('seed', { level: config.LOG_LEVEL, stdout: false });
  const conn = await connectMongo(config.MONGO_URL, log, { appName: 'ptw-seed' });
  const m = registerModels(conn);
  await ensureIndexes(conn);
  const r = await seed(m);
  process.stdout.write(`seeded ${DEMO_PROJECTS.length} projects, ${DEMO_USERS.length} users, ${DEMO_PERMIT_TYPES.length} permit types, ${r.permits} demo permits\n`);
  await conn.close();
}

if (require.main === module) {
  main().catch((err: Error) => {
    process.stderr.write(`seed: ${err.message}\n`);
    process.exit(1);
  });
}
