/**
 * The admin console's health panel in a real browser (Debian's Chromium, headless, driven by
 * puppeteer-core) with 50,000 sync events in the last 24 hours (issue 22): the hourly chart has one
 * bar group per hour of the history answer, its legend totals are that answer's sums and what was
 * seeded in its window, the 24 h figures are the seeded ones, and nothing is "unknown". With the sync
 * service stopped, its figures say "unknown" (never 0), the panel says degraded and the chart
 * "(incomplete…".
 */
import fs from 'node:fs';
import mongoose, { type Connection } from 'mongoose';
import puppeteer, { type Browser, type Page } from 'puppeteer-core';
import { mapLimit, recordTally, registerModels, warmTallies, type Models } from '@ptw/db';
import type { Stack } from '../../libs/devstore/src/stack';
import { startTestStack, token } from '../support/stack';

jest.setTimeout(600_000);

const CHROMIUM = '/usr/bin/chromium';
const MIN = 60_000;
const H = 3600_000;
const DAY = 24 * H;
const BATCHES = 5000;
const PER_BATCH = 10;
// The health service's deadline for each peer: two cores shared with other suites here.
const PEER_DEADLINE_MS = 8000;

type Counts = { applied: number; conflicts: number; rejected: number };
type Hour = Counts & { start: string; bulk_exports: number };
type History = { as_of: string; hours: Hour[]; degraded: boolean };
type Health = { sync: Record<string, number | string | null>; services: Record<string, string>; degraded: boolean };

let stack: Stack;
let conn: Connection;
let m: Models;
let browser: Browser;
let manager: string;
/** The seeded batches: when, and what each counted. */
const batches: { at: number; counts: Counts }[] = [];

const floorMinute = (t: number) => Math.floor(t / MIN) * MIN;

/** The sums of the seeded batches stamped from `from` (inclusive) to `to` (exclusive). */
function seeded(from: number, to = Infinity): Counts {
  const out = { applied: 0, conflicts: 0, rejected: 0 };
  for (const b of batches) {
    if (b.at < from || b.at >= to) continue;
    out.applied += b.counts.applied;
    out.conflicts += b.counts.conflicts;
    out.rejected += b.counts.rejected;
  }
  return out;
}

async function get<T>(p: string, tok: string): Promise<{ status: number; body: T }> {
  const res = await fetch(`${stack.gatewayUrl}/api/v1/ptw${p}`, { headers: { authorization: `Bearer ${tok}` } });
  return { status: res.status, body: (await res.json()) as T };
}

/**
 * Seeds what the sync service records for 5,000 batches of 10 changes (see services/sync/src/batch.ts):
 * one `sync_events` document per change and one `sync` tally per batch, spread evenly from 24 h − 1 min
 * ago to 2 min ago. Every 10th batch has one conflict and every 25th one rejected change: the last
 * batch of each ten (or twenty-five), so the first batches, the first to leave the 24 h window, carry
 * only applied changes.
 */
async function seedSyncHistory(): Promise<void> {
  const now = Date.now();
  const first = now - DAY + MIN;
  const step = (now - 2 * MIN - first) / (BATCHES - 1);
  const events: Record<string, unknown>[] = [];
  for (let b = 0; b < BATCHES; b++) {
    const at = new Date(first + Math.round(b * step));
    const outcomes: ('applied' | 'conflict' | 'rejected')[] = Array<'applied'>(PER_BATCH).fill('applied');
    if (b % 10 === 9) outcomes[2] = 'conflict';
    if (b % 25 === 24) outcomes[3] = 'rejected';
    const counts = { applied: 0, conflicts: 0, rejected: 0 };
    outcomes.forEach((o, k) => {
      counts[o === 'applied' ? 'applied' : o === 'conflict' ? 'conflicts' : 'rejected']++;
      events.push({
        device_id: `tab-${b % 40}`,
        user_id: `u-${b % 50}`,
        project_id: b % 2 ? 'p1' : 'p2',
        entity: k % 3 ? 'permit' : 'isolation_point',
        outcome: o,
        reason: o === 'applied' ? 'applied' : o === 'conflict' ? 'stale_version' : 'validation_error',
        at,
      });
    });
    batches.push({ at: at.getTime(), counts });
  }
  for (let i = 0; i < events.length; i += 2000) await m.SyncEvent.insertMany(events.slice(i, i + 2000), { lean: true });
  await mapLimit(batches, 20, (b) => recordTally(m, 'sync', b.counts, new Date(b.at)));
  // The sync service built its rollups of the last 24 h when it started (warmTallies), before these
  // tallies existed: empty, and a closed bucket's rollup is never read again from its tallies. A
  // service that recorded them live would have none of these; drop them and warm as it does at start.
  await m.TallyRollup.deleteMany({ series: 'sync' });
  await warmTallies(m, 'sync', 120_000);
}

beforeAll(async () => {
  if (!fs.existsSync(CHROMIUM)) throw new Error(`${CHROMIUM} is missing: run \`make testdeps\` (Debian package chromium)`);
  // A history answer is served from memory for 2 s here (60 s by default): the test of a stopped
  // service waits for the next one.
  stack = await startTestStack('admin-history', { PTW_HEALTH_PEER_DEADLINE_MS: String(PEER_DEADLINE_MS), PTW_HEALTH_HISTORY_CACHE_SECONDS: '2' });
  conn = await mongoose.createConnection(stack.mongoUrl).asPromise();
  m = registerModels(conn);
  await seedSyncHistory();
  manager = await token('u-manager', 'manager', ['p1', 'p2'], 3600);
  browser = await puppeteer.launch({ executablePath: CHROMIUM, headless: true, args: ['--no-sandbox'] });
});

afterAll(async () => {
  await browser?.close();
  await conn?.close();
  await stack?.stop();
});

const text = (page: Page, selector: string) => page.$eval(selector, (e) => e.textContent ?? '');
const legend = (page: Page) => page.$$eval('#health [data-history=totals] li', (li) => li.map((e) => e.textContent ?? ''));
const headings = (page: Page) => page.$$eval('#health h3', (h) => h.map((e) => e.textContent ?? ''));
const serviceStates = async (page: Page) =>
  Object.fromEntries(
    await page.$eval('#health', (e) =>
      Array.from(e.querySelectorAll('table')[0]?.querySelectorAll('tbody tr') ?? []).map((r) => [r.children[0].textContent ?? '', r.children[1].textContent ?? '']),
    ),
  ) as Record<string, string>;

describe('with 50,000 sync events in the last 24 hours', () => {
  let page: Page;
  const problems: string[] = [];

  beforeAll(async () => {
    page = await (await browser.createBrowserContext()).newPage();
    page.on('console', (msg) => {
      if (msg.type() === 'error') problems.push(`console: ${msg.text()}`);
    });
    page.on('pageerror', (err) => problems.push(`page: ${(err as Error).message}`));
    await page.setViewport({ width: 1280, height: 900 });
    expect((await page.goto(`${stack.gatewayUrl}/admin/`, { waitUntil: 'load' }))?.status()).toBe(200);
  });

  it('when a manager signs in, then the chart has one group per hour, its totals are the seeded ones and no figure is unknown', async () => {
    const signedIn = Date.now();
    await page.type('#token', manager);
    await page.click('#login button[type=submit]');
    await page.waitForFunction(() => /As of/.test(document.getElementById('as-of')?.textContent ?? ''), { timeout: 60_000 });

    // The 24 h figures: what was seeded in the window of the answer shown. That window starts at the
    // minute of (its time − 24 h), between sign-in and now: both ends give the same sums unless a
    // batch left the window meanwhile.
    const shown = {
      applied: Number(await text(page, '#health [data-figure=applied] dd')),
      conflicts: Number(await text(page, '#health [data-figure=conflicts] dd')),
      rejected: Number(await text(page, '#health [data-figure=rejected] dd')),
    };
    const lo = seeded(floorMinute(Date.now() - DAY));
    const hi = seeded(floorMinute(signedIn - DAY));
    const inWindow = (k: keyof Counts) => (shown[k] >= lo[k] && shown[k] <= hi[k] ? shown[k] : `${lo[k]}–${hi[k]}`);
    expect(shown).toEqual({ applied: inWindow('applied'), conflicts: inWindow('conflicts'), rejected: inWindow('rejected') });
    expect(shown.conflicts).toBe(500);
    expect(shown.rejected).toBe(200);
    expect(await page.$eval('#health [data-overall]', (e) => e.getAttribute('data-overall'))).toBe('ok');
    expect(await serviceStates(page)).toEqual({ sync: 'SERVING', workflow: 'SERVING', export: 'SERVING', health: 'SERVING', store: 'REACHABLE', redis: 'REACHABLE' });

    // The history, asked with the same token (the health service keeps a complete answer for a
    // minute: the page shows this one at its next refresh at the latest).
    const history = await get<History>('/permits/health/history/', manager);
    expect(history.status).toBe(200);
    expect(history.body.degraded).toBe(false);
    const hours = history.body.hours;
    expect(hours.length).toBeGreaterThan(0);
    const sum = (f: keyof Hour) => hours.reduce((a, h) => a + (h[f] as number), 0);
    const expected = [`Applied: ${sum('applied')}`, `Conflicts: ${sum('conflicts')}`, `Rejected: ${sum('rejected')}`, `Exports: ${sum('bulk_exports')}`];
    await page
      .waitForFunction(
        (want: string[]) =>
          Array.from(document.querySelectorAll('#health [data-history=totals] li'))
            .map((e) => e.textContent)
            .join('|') === want.join('|'),
        { timeout: 45_000 },
        expected,
      )
      .catch(() => undefined);
    expect(await legend(page)).toEqual(expected);
    expect(await page.$$eval('#health svg.chart g', (g) => g.length)).toBe(hours.length);

    // The answer's figures are the seeded ones: in all (its window starts at the minute of its first
    // hour's start, see @ptw/db tallies.ts) and hour by hour, and each bar group's title says so.
    const starts = hours.map((h) => floorMinute(Date.parse(h.start)));
    expect({ applied: sum('applied'), conflicts: sum('conflicts'), rejected: sum('rejected') }).toEqual(seeded(starts[0]));
    expect(hours.map((h) => ({ applied: h.applied, conflicts: h.conflicts, rejected: h.rejected }))).toEqual(starts.map((s, i) => seeded(s, starts[i + 1])));
    expect(sum('applied')).toBeGreaterThan(0);
    const titles = await page.$$eval('#health svg.chart g title', (t) => t.map((e) => e.textContent ?? ''));
    expect(titles.map((t) => t.replace(/^.*?: /, ''))).toEqual(hours.map((h) => `${h.applied} applied, ${h.conflicts} conflicts, ${h.rejected} rejected, ${h.bulk_exports} exports`));

    // Nothing unknown, nothing incomplete, no error.
    expect(await page.$$eval('#panels .unknown', (u) => u.length)).toBe(0);
    expect(await text(page, '#health')).not.toMatch(/unknown/i);
    expect((await headings(page)).filter((h) => h.includes('(incomplete'))).toEqual([]);
    expect(problems).toEqual([]);
  });

  it('when the sync service is stopped, then its figures say unknown, the panel says degraded and the chart says incomplete', async () => {
    const child = stack.procs.sync;
    const exited = new Promise((r) => child.once('exit', r));
    child.kill('SIGKILL');
    await exited;

    // The API: the sync figures are null with the reason, the history is marked degraded.
    const health = await get<Health>('/permits/health/', manager);
    expect(health.status).toBe(200);
    expect(health.body.degraded).toBe(true);
    expect(health.body.services.sync).not.toBe('SERVING');
    expect(health.body.sync).toMatchObject({ applied_last_24h: null, conflicts_last_24h: null, rejected_last_24h: null, unavailable_reason: expect.stringMatching(/^sync /) });

    // The page, reloaded (the token stays in the tab's session). The health service may answer the
    // history from its cache of the last complete answer (2 s here): wait for the next one.
    await page.reload({ waitUntil: 'load' });
    await page.waitForFunction(
      () =>
        document.querySelector('#health [data-overall]')?.getAttribute('data-overall') === 'degraded' &&
        Array.from(document.querySelectorAll('#health h3')).some((h) => (h.textContent ?? '').includes('(incomplete')),
      { timeout: 150_000 },
    );
    for (const f of ['applied', 'conflicts', 'rejected']) {
      expect(await text(page, `#health [data-figure=${f}] dd`)).toBe('unknown');
      expect(await page.$eval(`#health [data-figure=${f}] dd`, (e) => [e.className, e.getAttribute('title')])).toEqual(['unknown', health.body.sync.unavailable_reason]);
    }
    // The figures of the services that answer stay known.
    expect(await page.$$eval('#panels .unknown', (u) => u.length)).toBe(3);
    expect(await text(page, '#health [data-figure=exports] dd')).toBe('0');
    expect(await text(page, '#health [data-overall]')).toMatch(/^DEGRADED Reason: sync is (?!SERVING)\S+$/);
    const states = await serviceStates(page);
    expect(states.sync).not.toBe('SERVING');
    expect(states).toMatchObject({ workflow: 'SERVING', export: 'SERVING', health: 'SERVING' });
    const history = await get<History>('/permits/health/history/', manager);
    expect(history.body.degraded).toBe(true);
    expect((await headings(page)).filter((h) => h.includes('(incomplete'))).toEqual([`Last ${history.body.hours.length} hours (incomplete: a service did not answer)`]);
    expect(await page.$$eval('#health svg.chart g', (g) => g.length)).toBe(history.body.hours.length);
    expect(problems).toEqual([]);
  });
});
