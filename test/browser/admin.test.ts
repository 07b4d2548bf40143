/**
 * The admin console in a real browser (Debian's Chromium, headless, driven by puppeteer-core)
 * against the real stack: the figures this test creates — a job run, a sync conflict, an overdue
 * step on a permit with a hostile title, a throttled request — show in every panel; "run now"
 * adds a run; a worker sees "not allowed"; the hostile title stays text; a screenshot is written to
 * logs/.
 */
import fs from 'node:fs';
import path from 'node:path';
import mongoose, { type Connection } from 'mongoose';
import puppeteer, { type Browser, type Page } from 'puppeteer-core';
import { registerModels, type Models } from '@ptw/db';
import { REPO_ROOT, type Stack } from '../../libs/devstore/src/stack';
import { startTestStack, token } from '../support/stack';

jest.setTimeout(240_000);

const CHROMIUM = '/usr/bin/chromium';
const HOSTILE = '<img src=x onerror=alert(1)>';
const H = 3600_000;
// Throttle counters live in the shared Redis across runs: user ids are unique per run.
const RUN = Date.now().toString(36);
const SHOTS = path.join(REPO_ROOT, 'logs');

let stack: Stack;
let conn: Connection;
let m: Models;
let browser: Browser;
let manager: string;
let hostile: { id: string; permit_number: string };

async function call(method: string, p: string, tok: string, body?: unknown) {
  const res = await fetch(`${stack.gatewayUrl}/api/v1/ptw${p}`, {
    method,
    headers: { authorization: `Bearer ${tok}`, 'content-type': 'application/json' },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  return { status: res.status, body: await res.json() };
}

beforeAll(async () => {
  if (!fs.existsSync(CHROMIUM)) throw new Error(`${CHROMIUM} is missing: run \`make testdeps\` (Debian package chromium)`);
  // Eight test suites share two cores here: a peer's figures may take more than the default 1.2 s.
  stack = await startTestStack('admin', { PTW_THROTTLE_NOTIFICATIONS: '1/min', PTW_HEALTH_PEER_DEADLINE_MS: '4000' });
  conn = await mongoose.createConnection(stack.mongoUrl).asPromise();
  m = registerModels(conn);
  manager = await token('u-manager', 'manager', ['p1', 'p2']);
  const worker = await token('u-worker', 'worker', ['p1']);

  // An overdue verification step, on a permit whose title is markup.
  const created = await call('POST', '/permits/', worker, {
    permit_type_id: 'hot-work',
    title: HOSTILE,
    planned_start_time: new Date(Date.now() + H).toISOString(),
    planned_end_time: new Date(Date.now() + 8 * H).toISOString(),
  });
  expect(created.status).toBe(201);
  hostile = created.body;
  expect((await call('POST', `/permits/${hostile.id}/transition/`, worker, { status: 'submitted' })).status).toBe(200);
  await m.Permit.updateOne({ _id: hostile.id }, { $set: { submitted_at: new Date(Date.now() - 7 * H) } });
  await m.WorkflowStep.updateMany({ permit_id: hostile.id }, { $set: { started_at: new Date(Date.now() - 7 * H) } });

  // A sync conflict: an update without the version it was made against.
  const sync = await call('POST', '/sync-offline-data/', worker, {
    device_id: `tab-admin-${RUN}`,
    changes: [{ entity: 'permit', op: 'update', offline_id: `o-${RUN}`, server_id: hostile.id, data: { location: 'Bay 2' } }],
  });
  expect(sync.body.summary).toMatchObject({ conflicts: 1 });

  // A job run.
  expect((await call('POST', '/jobs/check_expiring_permits/run/', manager)).body.outcome).toBe('success');

  // A throttled request (ptw_notifications is 1/min here).
  const noisy = await token(`u-noisy-${RUN}`, 'worker', ['p1']);
  const statuses = [(await call('GET', '/notifications/', noisy)).status, (await call('GET', '/notifications/', noisy)).status];
  expect(statuses).toEqual([200, 429]);

  browser = await puppeteer.launch({ executablePath: CHROMIUM, headless: true, args: ['--no-sandbox'] });
});

afterAll(async () => {
  await browser?.close();
  await conn?.close();
  await stack?.stop();
});

/** A page in a fresh browser context, recording console errors, page errors and dialogs. */
async function openConsole(width: number, height: number) {
  const context = await browser.createBrowserContext();
  const page = await context.newPage();
  const problems: string[] = [];
  const dialogs: string[] = [];
  page.on('console', (msg) => {
    if (msg.type() === 'error') problems.push(`console: ${msg.text()}`);
  });
  page.on('pageerror', (err) => problems.push(`page: ${(err as Error).message}`));
  page.on('dialog', (d) => {
    dialogs.push(d.message());
    void d.dismiss();
  });
  await page.setViewport({ width, height });
  const res = await page.goto(`${stack.gatewayUrl}/admin/`, { waitUntil: 'load' });
  expect(res?.status()).toBe(200);
  return { page, problems, dialogs, close: () => context.close() };
}

async function signIn(page: Page, tok: string) {
  await page.type('#token', tok);
  await page.click('#login button[type=submit]');
}

const text = (page: Page, selector: string) => page.$eval(selector, (e) => e.textContent ?? '');

/** The cells of every row of the first table in `selector`. */
const rows = (page: Page, selector: string) =>
  page.$eval(selector, (e) => Array.from(e.querySelectorAll('table')[0]?.querySelectorAll('tbody tr') ?? []).map((r) => Array.from(r.children).map((c) => c.textContent ?? '')));

describe('with a manager token', () => {
  let page: Page;
  let problems: string[];
  let dialogs: string[];
  let close: () => Promise<void>;

  beforeAll(async () => {
    ({ page, problems, dialogs, close } = await openConsole(1280, 900));
  });
  afterAll(() => close());

  it('when the page opens, then it asks for a token and shows no figure', async () => {
    expect(await page.$eval('#login', (e) => (e as HTMLElement).hidden)).toBe(false);
    expect(await page.$eval('#panels', (e) => (e as HTMLElement).hidden)).toBe(true);
    expect(await page.content()).not.toContain('PTW-');
  });

  it('when the token is pasted, then every panel shows the figures the test created', async () => {
    await signIn(page, manager);
    await page.waitForFunction(() => /As of/.test(document.getElementById('as-of')?.textContent ?? ''), { timeout: 30_000 });
    expect(await page.evaluate(() => sessionStorage.getItem('ptw_admin_token'))).toBeTruthy();
    expect(page.url()).not.toContain('ey');

    // Health: services, dependencies, 24 h figures and the hourly chart.
    expect(await text(page, '#health [data-overall]')).toContain('OK');
    const parts = Object.fromEntries((await rows(page, '#health')).map(([k, v]) => [k, v]));
    expect(parts).toEqual({ sync: 'SERVING', workflow: 'SERVING', export: 'SERVING', health: 'SERVING', store: 'REACHABLE', redis: 'REACHABLE' });
    expect(await text(page, '#health [data-figure=conflicts] dd')).toBe('1');
    expect(Number(await text(page, '#health [data-figure=overdue_verification] dd'))).toBeGreaterThanOrEqual(1);
    expect(await text(page, '#health [data-history=totals]')).toContain('Conflicts: 1');
    expect(await page.$$eval('#health svg.chart g', (g) => g.length)).toBe(12);

    // Jobs: the three jobs, the run made through the API.
    const jobs = await rows(page, '#jobs');
    expect(jobs.map((r) => r[0]).sort()).toEqual(['auto_expire_permits', 'check_expiring_permits', 'check_overdue_workflow_tasks']);
    const expiring = jobs.find((r) => r[0] === 'check_expiring_permits')!;
    expect(expiring[1]).toMatch(/\S/);
    expect(expiring[1]).not.toBe('—');
    expect(expiring[2]).toBe('OK');
    const runs = await page.$eval('#jobs', (e) => Array.from(e.querySelectorAll('table')[1].querySelectorAll('tbody tr')).map((r) => r.children[0].textContent));
    expect(runs).toContain('check_expiring_permits');

    // Throttling: the 429 of ptw_notifications.
    const throttled = Object.fromEntries((await rows(page, '#throttling .panel-body')).map((r) => [r[0], r[1]]));
    expect(throttled).toMatchObject({ ptw_notifications: '1', ptw_sync: '0' });

    // Overdue work: the hostile permit, as the characters of its title.
    const overdue = await rows(page, '#overdue');
    const row = overdue.find((r) => r[0] === hostile.permit_number);
    expect(row).toBeDefined();
    expect(row!.slice(1, 4)).toEqual([HOSTILE, 'p1', 'submitted']);
    expect(Number.parseFloat(row![4])).toBeGreaterThanOrEqual(2.9);
    expect(await page.$$eval('#panels img', (imgs) => imgs.length)).toBe(0);
  });

  it('when a user is looked up, then their usage per scope is shown', async () => {
    await page.type('#throttle-user', `u-noisy-${RUN}`);
    await page.click('#throttle-form button');
    await page.waitForFunction(() => /Usage of/.test(document.getElementById('throttle-user-result')?.textContent ?? ''));
    const usage = Object.fromEntries((await rows(page, '#throttle-user-result')).map((r) => [r[0], [r[1], r[4]]]));
    expect(usage.ptw_notifications).toEqual(['1 / 1', 'AT LIMIT']);
  });

  it('when "Run now" is clicked, then its result shows and the new run is listed', async () => {
    const countRuns = () =>
      page.$eval('#jobs', (e) => Array.from(e.querySelectorAll('table')[1]?.querySelectorAll('tbody tr') ?? []).filter((r) => r.children[0].textContent === 'auto_expire_permits').length);
    const before = await countRuns();
    await page.click('[data-run="auto_expire_permits"]');
    await page.waitForFunction(() => /auto_expire_permits: attempt/.test(document.getElementById('job-result')?.textContent ?? ''), { timeout: 60_000 });
    expect(await text(page, '#job-result')).toMatch(/^SUCCESS auto_expire_permits: attempt 1, \d+ ms$/);
    await page.waitForFunction(
      (n) => Array.from(document.querySelectorAll('#jobs table')[1]?.querySelectorAll('tbody tr') ?? []).filter((r) => r.children[0].textContent === 'auto_expire_permits').length > n,
      { timeout: 30_000 },
      before,
    );
    expect(await m.JobRun.countDocuments({ job: 'auto_expire_permits' })).toBeGreaterThan(before);
  });

  it('when the page is in use, then no console error, page error or dialog happened, and a screenshot is written', async () => {
    fs.mkdirSync(SHOTS, { recursive: true });
    await page.screenshot({ path: path.join(SHOTS, 'admin-console.png'), fullPage: true });
    expect(fs.statSync(path.join(SHOTS, 'admin-console.png')).size).toBeGreaterThan(10_000);
    expect(problems).toEqual([]);
    expect(dialogs).toEqual([]);
  });
});

it('when the page is phone-wide, then nothing overflows sideways, every panel is there, and it refreshes by itself', async () => {
  const { page, problems, close } = await openConsole(390, 844);
  try {
    await signIn(page, manager);
    await page.waitForFunction(() => /As of/.test(document.getElementById('as-of')?.textContent ?? ''), { timeout: 30_000 });
    expect(await page.evaluate(() => document.documentElement.scrollWidth)).toBeLessThanOrEqual(390);
    for (const id of ['health', 'jobs', 'throttling', 'overdue']) {
      expect(await page.$eval(`#${id}`, (e) => (e as HTMLElement).getBoundingClientRect().width)).toBeLessThanOrEqual(390);
    }
    await page.screenshot({ path: path.join(SHOTS, 'admin-console-phone.png'), fullPage: true });
    // Left alone, the page refreshes itself within 15 s.
    const first = await text(page, '#as-of');
    await page.waitForFunction((t) => document.getElementById('as-of')?.textContent !== t && /As of/.test(document.getElementById('as-of')?.textContent ?? ''), { timeout: 25_000 }, first);
    expect(problems).toEqual([]);
  } finally {
    await close();
  }
});

it('when a worker token is pasted, then the page says "not allowed" and shows no figure', async () => {
  const { page, dialogs, close } = await openConsole(1024, 768);
  try {
    await signIn(page, await token('u-worker', 'worker', ['p1']));
    await page.waitForFunction(() => !(document.getElementById('message') as HTMLElement).hidden, { timeout: 30_000 });
    expect(await text(page, '#message')).toMatch(/^Not allowed/);
    expect(await page.$eval('#panels', (e) => (e as HTMLElement).hidden)).toBe(true);
    expect(await page.$$eval('.panel-body', (b) => b.map((e) => e.childElementCount))).toEqual([0, 0, 0, 0]);
    expect(await page.content()).not.toContain(hostile.permit_number);
    expect(await page.evaluate(() => sessionStorage.getItem('ptw_admin_token'))).toBeNull();
    expect(dialogs).toEqual([]);
  } finally {
    await close();
  }
});
