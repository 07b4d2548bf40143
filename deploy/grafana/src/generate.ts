/**
 * Writes the dashboards as JSON: `npm run dashboards` into deploy/grafana/dashboards (committed;
 * Grafana provisions them from there), or into the folder given as the first argument (the
 * staleness test compares the two). Dashboards no longer generated are removed.
 */
import fs from 'node:fs';
import path from 'node:path';
import { allDashboards } from './dashboards';

const out = path.resolve(process.argv[2] ?? path.join(__dirname, '..', 'dashboards'));
fs.mkdirSync(out, { recursive: true });
const dashboards = allDashboards();
for (const stale of fs.readdirSync(out).filter((f) => f.endsWith('.json') && !(f in dashboards))) fs.rmSync(path.join(out, stale));
for (const [file, dashboard] of Object.entries(dashboards)) fs.writeFileSync(path.join(out, file), `${JSON.stringify(dashboard, null, 2)}\n`);
process.stdout.write(`${Object.keys(dashboards).length} dashboards written to ${path.relative(process.cwd(), out) || '.'}\n`);
