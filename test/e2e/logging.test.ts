/**
 * Safe logging across the whole system: personal and secret data sent through every route and
 * every sync change never reaches any service's log file, and every line carries a req_id.
 */
import fs from 'node:fs';
import path from 'node:path';
import { startTestStack, token } from '../support/stack';
import type { Stack } from '../../libs/devstore/src/stack';

jest.setTimeout(120_000);

let stack: Stack & { logDir: string };
const EMAIL = 'jane.doe@example.com';
const NAME = 'Jane Qwerty-Doe';
const SIGNATURE = `data:image/png;base64,${Buffer.from('SIGNATURE-STROKES-'.repeat(20)).toString('base64')}`;
const ATTACHMENT = Buffer.from('%PDF-1.7 confidential attachment body '.repeat(30)).toString('base64');

beforeAll(async () => {
  stack = await startTestStack('logging', { PTW_THROTTLE_SYNC: '100000/min', PTW_THROTTLE_BULK_EXPORT: '100000/hour' });
});
afterAll(async () => stack?.stop());

it('when personal data, signatures, attachments and the token go through every route and sync change, then no log line contains them and every line has req_id', async () => {
  const run = Date.now().toString(36);
  const manager = await token(`u-log-${run}`, 'manager', ['p1']);
  const worker = await token(`u-logw-${run}`, 'worker', ['p1']);
  const pii = { title: `Call ${NAME} ${EMAIL}`, description: SIGNATURE, location: ATTACHMENT.slice(0, 400), control_measures: `${NAME} <${EMAIL}>` };
  const send = async (method: string, p: string, tok: string, body?: unknown) => {
    const res = await fetch(`${stack.gatewayUrl}/api/v1/ptw${p}`, {
      method,
      headers: { authorization: `Bearer ${tok}`, 'content-type': 'application/json', 'x-forwarded-for': EMAIL, 'user-agent': NAME },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    await res.arrayBuffer();
    return res;
  };
  const created = await send('POST', '/permits/', worker, { permit_type_id: 'hot-work', ...pii });
  expect(created.status).toBe(201);
  const id =
    (await send('GET', `/permits/?q=${encodeURIComponent(EMAIL)}`, worker)).status &&
    (await fetch(`${stack.gatewayUrl}/api/v1/ptw/permits/?page_size=1`, { headers: { authorization: `Bearer ${worker}` } }).then((r) => r.json() as Promise<{ results: { id: string }[] }>))
      .results[0].id;
  const calls: [string, string, string, unknown?][] = [
    ['PATCH', `/permits/${id}/`, worker, { version: 1, description: `${SIGNATURE} ${NAME}` }],
    ['PATCH', `/permits/${id}/`, worker, { version: 1, signature: SIGNATURE, attachment: ATTACHMENT, email: EMAIL }],
    ['POST', `/permits/${id}/transition/`, worker, { status: 'submitted', comments: `${NAME} ${EMAIL}` }],
    ['POST', `/permits/${id}/assign_isolation/`, worker, { name: `Breaker by ${NAME}`, energy_type: EMAIL }],
    ['POST', `/permits/${id}/update_isolation/`, manager, { point_id: EMAIL, action: 'isolate', notes: SIGNATURE }],
    ['POST', `/permits/${id}/update_closeout/`, manager, { remarks: `${NAME} ${EMAIL}`, checklist: { [EMAIL]: { done: true } } }],
    ['POST', `/permits/${id}/complete_closeout/`, manager, { attachment: ATTACHMENT }],
    ['GET', `/permits/${encodeURIComponent(EMAIL)}/`, worker],
    ['GET', `/permits/?q=${encodeURIComponent(NAME)}&status=${encodeURIComponent(EMAIL)}`, manager],
    ['GET', '/workflow/my-tasks/', manager],
    ['GET', `/notifications/?page=${encodeURIComponent(EMAIL)}`, manager],
    ['POST', `/notifications/${encodeURIComponent(EMAIL)}/read/`, manager],
    ['GET', `/permits/kpis/?project=${encodeURIComponent(EMAIL)}`, manager],
    ['POST', `/permits/bulk_export_pdf/?q=${encodeURIComponent(NAME)}`, manager, { permit_ids: [id] }],
    ['POST', '/permits/bulk_export_excel/', manager, { permit_ids: [id, EMAIL], detailed: true }],
    ['GET', `/throttle-status/?user=${encodeURIComponent(EMAIL)}`, manager],
    ['GET', '/permits/health/', manager],
    ['POST', `/jobs/${encodeURIComponent(EMAIL)}/run/`, manager],
    [
      'POST',
      '/sync-offline-data/',
      worker,
      {
        device_id: 'tablet-log',
        client_time: EMAIL,
        changes: [
          { entity: 'permit', op: 'create', offline_id: `log-${run}-1`, data: { permit_type_id: 'hot-work', ...pii, signature: SIGNATURE } },
          { entity: 'permit', op: 'update', offline_id: `log-${run}-2`, server_id: id, client_version: 1, data: { title: NAME, attachment: ATTACHMENT } },
          { entity: 'closeout', op: 'update', offline_id: `log-${run}-3`, server_id: id, client_version: 1, data: { remarks: EMAIL } },
          { entity: 'isolation_point', op: 'update', offline_id: `log-${run}-4`, server_id: EMAIL, client_version: 1, data: { status: 'isolated', notes: NAME } },
          { entity: EMAIL, op: NAME, offline_id: `log-${run}-5`, data: { signature: SIGNATURE } },
        ],
      },
    ],
    ['POST', '/sync-offline-data/', worker, { device_id: EMAIL, changes: [] }],
  ];
  for (const [method, p, tok, body] of calls) {
    const res = await send(method, p, tok, body);
    expect([method, p.slice(0, 60), res.status < 500]).toEqual([method, p.slice(0, 60), true]);
  }
  await new Promise((r) => setTimeout(r, 500));

  const files = fs.readdirSync(stack.logDir).filter((f) => f.endsWith('.log'));
  expect(files.sort()).toEqual(expect.arrayContaining(['export.log', 'gateway.log', 'health.log', 'sync.log', 'workflow.log']));
  const secrets = {
    email: EMAIL,
    name: NAME,
    signature: SIGNATURE.slice(30, 80),
    attachment: ATTACHMENT.slice(20, 70),
    worker_token: worker,
    manager_token: manager,
    token_signature: worker.split('.')[2],
  };
  let lines = 0;
  for (const f of files) {
    const text = fs.readFileSync(path.join(stack.logDir, f), 'utf8');
    for (const [what, secret] of Object.entries(secrets)) expect([f, what, text.includes(secret)]).toEqual([f, what, false]);
    for (const line of text.split('\n').filter(Boolean)) {
      lines++;
      expect([f, typeof JSON.parse(line).req_id]).toEqual([f, 'string']);
    }
  }
  process.stdout.write(`logging: scanned ${lines} lines in ${files.length} files for ${Object.keys(secrets).length} secrets\n`);
  expect(lines).toBeGreaterThan(40);
});
