/**
 * The API reference page (/api/docs/) in a real browser (Debian's Chromium): swagger-ui, served by
 * the gateway from its npm package under the page's CSP, renders every operation of the document.
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import Koa from 'koa';
import puppeteer, { type Browser } from 'puppeteer-core';
import { createLogger, memorySink, Metrics } from '@ptw/common';
import { requestMiddleware } from '../../gateway/src/middleware/request';
import { openApiDocument } from '../../gateway/src/openapi/document';
import { DOCS_PATH, docsMiddleware } from '../../gateway/src/openapi/serve';

jest.setTimeout(120_000);

const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';
let server: http.Server;
let base: string;
let browser: Browser;

beforeAll(async () => {
  const app = new Koa();
  app.use(requestMiddleware(createLogger('gateway', { stdout: false, sink: memorySink().sink }), new Metrics('gateway-docs-test')));
  app.use(docsMiddleware());
  // eslint-disable-next-line @typescript-eslint/no-misused-promises -- Koa's callback handles its own errors (ctx.onerror): its promise never rejects
  server = http.createServer(app.callback());
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  browser = await puppeteer.launch({ executablePath: CHROMIUM, headless: true, args: ['--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage'] });
});

afterAll(async () => {
  await browser?.close();
  await new Promise<void>((r) => server.close(() => r()));
});

describe('API reference page', () => {
  it('when opened in a browser, then every operation is listed and nothing breaks the CSP', async () => {
    const page = await browser.newPage();
    const problems: string[] = [];
    page.on('console', (m) => {
      if (m.type() === 'error') problems.push(m.text());
    });
    page.on('pageerror', (e) => problems.push(String(e)));
    page.on('requestfailed', (r) => problems.push(`request failed: ${r.url()}`));
    await page.evaluateOnNewDocument(() => {
      document.addEventListener('securitypolicyviolation', (e) => console.error(`CSP violation: ${e.violatedDirective} ${e.blockedURI}`));
    });
    await page.goto(`${base}${DOCS_PATH}`, { waitUntil: 'networkidle0' });
    const operations = Object.values(openApiDocument().paths as Record<string, object>).reduce((n, ops) => n + Object.keys(ops).length, 0);
    await page.waitForFunction((n) => document.querySelectorAll('.opblock').length === n, { timeout: 30_000 }, operations);
    const title = await page.$eval('.info .title', (e) => e.textContent ?? '');
    expect(title).toContain('PTW platform HTTP API');
    expect(await page.$$eval('.opblock-summary-path', (els) => els.map((e) => e.getAttribute('data-path')))).toEqual(
      expect.arrayContaining(['/api/v1/ptw/permits/{id}/', '/api/v1/ptw/sync-offline-data/']),
    );
    // Expanding an operation renders its schemas and examples too.
    await page.click('#operations-Permits-updatePermit .opblock-summary');
    await page.waitForSelector('#operations-Permits-updatePermit .responses-wrapper');
    expect(problems).toEqual([]);
  });
});
