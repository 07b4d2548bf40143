/**
 * Response compression on a real HTTP server, in front of the request middleware as in the app:
 * JSON and error answers compressed for clients that ask, exports and small answers never, and
 * the headers set inside kept.
 */
import crypto from 'node:crypto';
import http from 'node:http';
import net from 'node:net';
import zlib from 'node:zlib';
import { once } from 'node:events';
import { PassThrough, Readable } from 'node:stream';
import Koa from 'koa';
import { createLogger, Metrics } from '@ptw/common';
import { HttpError } from '../errors';
import { COMPRESS_MAX_BYTES, compressMiddleware } from './compress';
import { requestMiddleware } from './request';

const MIN_BYTES = 1024;
const page = { count: 100, results: Array.from({ length: 100 }, (_, i) => ({ id: `permit-${i}`, title: `Hot work on line ${i}`, status: 'draft', version: 1 })) };
// Stands for a ZIP/XLSX: compressed data, which no coding would make smaller.
const archive = crypto.randomBytes(8192);

let server: http.Server;
let port: number;

beforeAll(async () => {
  const app = new Koa();
  app.silent = true;
  app.use(compressMiddleware(MIN_BYTES));
  app.use(requestMiddleware(createLogger('gateway', { stdout: false, sink: new PassThrough().resume() }), new Metrics('gateway')));
  app.use(async (ctx) => {
    if (ctx.path === '/page') ctx.body = page;
    else if (ctx.path === '/small') ctx.body = { ok: true };
    else if (ctx.path === '/bundle.js') {
      ctx.type = 'application/javascript; charset=utf-8';
      ctx.body = Buffer.alloc(COMPRESS_MAX_BYTES + 1, 'x');
    } else if (ctx.path === '/created') {
      ctx.status = 201;
      ctx.body = page;
    } else if (ctx.path === '/conflict') throw new HttpError(409, 'conflict', 'Permit was changed', { server_state: page });
    else if (ctx.path === '/zip' || ctx.path === '/xlsx') {
      ctx.type = ctx.path === '/zip' ? 'application/zip' : 'application/vnd.openxmlformats-officedocument.spreadsheetml.sheet';
      ctx.attachment(ctx.path === '/zip' ? 'permits.zip' : 'permits.xlsx');
      ctx.body = Readable.from([archive]);
    }
  });
  // eslint-disable-next-line @typescript-eslint/no-misused-promises -- Koa's callback handles its own errors (ctx.onerror): its promise never rejects
  server = http.createServer(app.callback());
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  port = (server.address() as net.AddressInfo).port;
});

afterAll(async () => {
  server.closeAllConnections();
  await new Promise((resolve) => server.close(resolve));
});

/** GET with the raw bytes of the answer (fetch would decode them). */
function get(path: string, headers: Record<string, string> = {}): Promise<{ status: number; headers: http.IncomingHttpHeaders; body: Buffer }> {
  return new Promise((resolve, reject) => {
    http
      .get({ host: '127.0.0.1', port, path, headers }, (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => resolve({ status: res.statusCode!, headers: res.headers, body: Buffer.concat(chunks) }));
        res.on('error', reject);
      })
      .on('error', reject);
  });
}

const decode = { gzip: zlib.gunzipSync, br: zlib.brotliDecompressSync } as const;

it.each(['gzip', 'br'] as const)('when a client accepts %s, then a JSON answer over the threshold comes in it, smaller, decoding to the same JSON, with its request id', async (coding) => {
  const res = await get('/page', { 'accept-encoding': coding, 'x-request-id': `compress-${coding}` });
  expect([res.status, res.headers['content-encoding'], res.headers['x-request-id'], res.headers.vary]).toEqual([200, coding, `compress-${coding}`, 'Accept-Encoding']);
  expect(res.headers['content-type']).toBe('application/json; charset=utf-8');
  expect(res.body.length).toBeLessThan(Buffer.byteLength(JSON.stringify(page)) / 4);
  expect(JSON.parse(decode[coding](res.body).toString())).toEqual(page);
});

it('when a client accepts both, then br; when it refuses br by weight, then gzip', async () => {
  expect((await get('/page', { 'accept-encoding': 'gzip, deflate, br' })).headers['content-encoding']).toBe('br');
  expect((await get('/page', { 'accept-encoding': 'br;q=0, gzip' })).headers['content-encoding']).toBe('gzip');
});

it('when a client sends no Accept-Encoding, asks for identity or only for deflate, then the JSON comes as is with its length', async () => {
  for (const headers of [{}, { 'accept-encoding': 'identity' }, { 'accept-encoding': 'deflate' }] as Record<string, string>[]) {
    const res = await get('/page', headers);
    expect([res.headers['content-encoding'], res.headers['content-length'], res.headers.vary]).toEqual([undefined, String(res.body.length), 'Accept-Encoding']);
    expect(JSON.parse(res.body.toString())).toEqual(page);
  }
});

it('when the answer is under the threshold, then it comes as is', async () => {
  const res = await get('/small', { 'accept-encoding': 'gzip, br' });
  expect([res.headers['content-encoding'], res.body.toString()]).toEqual([undefined, '{"ok":true}']);
});

it('when the answer has a status of its own or is an error, then it is compressed with that status and body', async () => {
  const created = await get('/created', { 'accept-encoding': 'gzip' });
  expect([created.status, created.headers['content-encoding'], JSON.parse(zlib.gunzipSync(created.body).toString())]).toEqual([201, 'gzip', page]);
  const conflict = await get('/conflict', { 'accept-encoding': 'br' });
  expect([conflict.status, conflict.headers['content-encoding']]).toEqual([409, 'br']);
  expect(JSON.parse(zlib.brotliDecompressSync(conflict.body).toString())).toEqual({ error: { code: 'conflict', message: 'Permit was changed', details: { server_state: page } } });
});

it.each(['/zip', '/xlsx'])('when the answer is an export (%s, already compressed), then it is never compressed again', async (path) => {
  const res = await get(path, { 'accept-encoding': 'gzip, br' });
  expect([res.status, res.headers['content-encoding']]).toEqual([200, undefined]);
  expect(res.body.equals(archive)).toBe(true);
});

it('when the answer is a file over COMPRESS_MAX_BYTES (the docs page script), then it comes as is', async () => {
  const res = await get('/bundle.js', { 'accept-encoding': 'gzip, br' });
  expect([res.headers['content-encoding'], res.body.length]).toEqual([undefined, COMPRESS_MAX_BYTES + 1]);
});
