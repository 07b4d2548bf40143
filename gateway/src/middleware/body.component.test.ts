/**
 * The JSON body reader on a real HTTP server: compressed bodies counted after decoding (a gzip bomb
 * is a 413 like a large body), unsupported encodings refused, and a chunked body over the limit
 * answered with a 413 the client can read rather than a reset connection.
 */
import http from 'node:http';
import net from 'node:net';
import zlib from 'node:zlib';
import { once } from 'node:events';
import { PassThrough } from 'node:stream';
import Koa from 'koa';
import { createLogger, Metrics } from '@ptw/common';
import { DRAIN_MAX_BYTES, jsonBody } from './body';
import { requestMiddleware } from './request';

const LIMIT = 64 * 1024;

interface Served {
  url: string;
  port: number;
  /** Bodies the route was reached with, and their decoded sizes. */
  reached: { body: unknown; bytes: number }[];
  close(): Promise<void>;
}

async function serve(): Promise<Served> {
  const app = new Koa();
  app.silent = true;
  const reached: Served['reached'] = [];
  app.use(requestMiddleware(createLogger('gateway', { stdout: false, sink: new PassThrough().resume() }), new Metrics('gateway')));
  app.use(jsonBody(LIMIT));
  app.use(async (ctx) => {
    const entry = { body: (ctx.request as unknown as { body: unknown }).body, bytes: (ctx.state as { bodyBytes: number }).bodyBytes };
    reached.push(entry);
    ctx.body = entry;
  });
  // eslint-disable-next-line @typescript-eslint/no-misused-promises -- Koa's callback handles its own errors (ctx.onerror): its promise never rejects
  const server = http.createServer(app.callback());
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const port = (server.address() as net.AddressInfo).port;
  return {
    url: `http://127.0.0.1:${port}/sync`,
    port,
    reached,
    close: async () => {
      server.closeAllConnections();
      await new Promise((resolve) => server.close(resolve));
    },
  };
}

let s: Served;
beforeEach(async () => (s = await serve()));
afterEach(() => s.close());

const post = (body: Buffer | string, headers: Record<string, string> = {}) => fetch(s.url, { method: 'POST', headers: { 'content-type': 'application/json', ...headers }, body });

/**
 * POSTs a chunked body (no Content-Length) of 16 KiB chunks, `total` bytes in all, and reads the
 * answer; the upload stops once the answer is in, like curl does.
 */
function chunked(total: number): Promise<{ status: number; body: unknown }> {
  return new Promise((resolve, reject) => {
    const req = http.request({ host: '127.0.0.1', port: s.port, path: '/sync', method: 'POST', headers: { 'content-type': 'application/json' } });
    const chunk = Buffer.alloc(16 * 1024, 0x20);
    let sent = 0;
    let answered = false;
    const pump = () => {
      while (!answered && sent < total) {
        sent += chunk.length;
        if (!req.write(chunk)) return void req.once('drain', pump);
      }
      if (!answered) req.end();
    };
    req.on('response', (res) => {
      answered = true;
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => (text += c));
      res.on('end', () => resolve({ status: res.statusCode!, body: JSON.parse(text) }));
      res.on('error', reject);
    });
    req.on('error', reject);
    pump();
  });
}

/**
 * A client that sends an endless chunked body without ever looking at the answer (a raw socket: the
 * http client stops writing once its response has ended). Resolves when the server closes the
 * connection, with what the client read and how much it had sent.
 */
async function deafEndless(): Promise<{ answer: string; sent: number }> {
  const socket = net.connect(s.port, '127.0.0.1');
  await once(socket, 'connect');
  let answer = '';
  let sent = 0;
  socket.setEncoding('utf8');
  socket.on('data', (c: string) => (answer += c));
  socket.on('error', () => undefined);
  const frame = Buffer.concat([Buffer.from('4000\r\n'), Buffer.alloc(0x4000, 0x20), Buffer.from('\r\n')]);
  socket.write('POST /sync HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n');
  const pump = () => {
    while (!socket.destroyed) {
      sent += 0x4000;
      if (!socket.write(frame)) return void socket.once('drain', pump);
    }
  };
  pump();
  await new Promise((resolve) => socket.once('close', resolve));
  return { answer, sent };
}

const doc = { device_id: 'tab-1', changes: [{ entity: 'permit', op: 'create', offline_id: 'o1', data: { title: 'Compressed' } }] };

describe('Content-Encoding', () => {
  it.each([
    ['gzip', zlib.gzipSync],
    ['x-gzip', zlib.gzipSync],
    ['br', zlib.brotliCompressSync],
    ['GZIP', zlib.gzipSync],
  ])('when the body is sent as %s, then the route gets the decoded JSON and its decoded size', async (encoding, encode) => {
    const text = JSON.stringify(doc);
    const res = await post(encode(Buffer.from(text)), { 'content-encoding': encoding });
    expect(res.status).toBe(200);
    expect(await res.json()).toEqual({ body: doc, bytes: Buffer.byteLength(text) });
  });

  it('when a gzip body decodes to just the limit, then it is accepted', async () => {
    const text = JSON.stringify({ pad: 'x'.repeat(LIMIT - 10) });
    expect(Buffer.byteLength(text)).toBe(LIMIT);
    const res = await post(zlib.gzipSync(text), { 'content-encoding': 'gzip' });
    expect([res.status, ((await res.json()) as { bytes: number }).bytes]).toEqual([200, LIMIT]);
  });

  it.each([
    ['gzip', zlib.gzipSync],
    ['br', zlib.brotliCompressSync],
  ])('when a small %s body decodes past the limit (a bomb), then 413 with the error shape and the route is never reached', async (encoding, encode) => {
    const bomb = encode(Buffer.from(JSON.stringify({ pad: ' '.repeat(4 * 1024 * 1024) })), { params: { [zlib.constants.BROTLI_PARAM_QUALITY]: 4 } });
    expect(bomb.length).toBeLessThan(LIMIT);
    const res = await post(bomb, { 'content-encoding': encoding });
    expect(res.status).toBe(413);
    expect(await res.json()).toEqual({ error: { code: 'payload_too_large', message: `Request body exceeds ${LIMIT} bytes`, details: { limit_bytes: LIMIT } } });
    expect(s.reached).toEqual([]);
  });

  it.each(['deflate', 'compress', 'zstd', 'gzip, br'])('when the body is sent as %s, then 415 naming what is supported and the route is never reached', async (encoding) => {
    const res = await post(zlib.deflateSync(JSON.stringify(doc)), { 'content-encoding': encoding });
    expect([res.status, res.headers.get('accept-encoding')]).toEqual([415, 'gzip, br']);
    expect(await res.json()).toEqual({
      error: { code: 'unsupported_content_encoding', message: 'Request body must be sent as identity, gzip or br', details: { supported: ['identity', 'gzip', 'br'] } },
    });
    expect(s.reached).toEqual([]);
  });

  it('when a gzip body is corrupt or is not gzip at all, then 400 and the route is never reached', async () => {
    const truncated = zlib.gzipSync(JSON.stringify(doc)).subarray(0, 20);
    for (const body of [truncated, JSON.stringify(doc)]) {
      const res = await post(body, { 'content-encoding': 'gzip' });
      expect([res.status, ((await res.json()) as { error: { code: string } }).error.code]).toEqual([400, 'invalid_body']);
    }
    expect(s.reached).toEqual([]);
  });

  it('when the body is identity or empty with an encoding, then it is read as before', async () => {
    const identity = await post(JSON.stringify(doc), { 'content-encoding': 'identity' });
    expect(await identity.json()).toEqual({ body: doc, bytes: Buffer.byteLength(JSON.stringify(doc)) });
    const empty = await post('', { 'content-encoding': 'gzip' });
    expect(await empty.json()).toEqual({ body: {}, bytes: 0 });
  });
});

describe('chunked bodies over the limit', () => {
  it('when a chunked body passes the limit, then the client reads a 413 with the error shape and the route is never reached', async () => {
    const res = await chunked(4 * LIMIT);
    expect([res.status, res.body]).toEqual([413, { error: { code: 'payload_too_large', message: `Request body exceeds ${LIMIT} bytes`, details: { limit_bytes: LIMIT } } }]);
    expect(s.reached).toEqual([]);
  });

  it('when fetch streams a body past the limit, then it gets the 413 rather than a network error', async () => {
    const chunk = new Uint8Array(16 * 1024).fill(0x20);
    let n = 0;
    const stream = new ReadableStream<Uint8Array>({
      pull(c) {
        if (n++ < 64) c.enqueue(chunk);
        else c.close();
      },
    });
    const res = await fetch(s.url, { method: 'POST', headers: { 'content-type': 'application/json' }, body: stream, duplex: 'half' });
    expect(res.status).toBe(413);
    expect(((await res.json()) as { error: { code: string } }).error.code).toBe('payload_too_large');
  });

  it('when the client finishes its refused body, then the same connection serves its next request', async () => {
    const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
    const ports: number[] = [];
    const request = (body: Buffer) =>
      new Promise<number>((resolve, reject) => {
        const req = http.request({ host: '127.0.0.1', port: s.port, path: '/sync', method: 'POST', agent, headers: { 'content-type': 'application/json', 'transfer-encoding': 'chunked' } });
        req.on('socket', (socket) => socket.once('connect', () => ports.push(socket.localPort!)));
        req.on('response', (res) => res.resume().on('end', () => resolve(res.statusCode!)));
        req.on('error', reject);
        req.end(body);
      });
    try {
      expect(await request(Buffer.alloc(2 * LIMIT, 0x20))).toBe(413);
      expect(await request(Buffer.from(JSON.stringify(doc)))).toBe(200);
      expect(ports).toHaveLength(1);
    } finally {
      agent.destroy();
    }
  });

  it('when a client keeps sending past the drain allowance, then it has its 413 and the connection is cut', async () => {
    const { answer, sent } = await deafEndless();
    const [head, body] = answer.split('\r\n\r\n');
    expect(head.split('\r\n')[0]).toBe('HTTP/1.1 413 Payload Too Large');
    expect(JSON.parse(body)).toMatchObject({ error: { code: 'payload_too_large' } });
    expect(sent).toBeGreaterThan(DRAIN_MAX_BYTES);
    expect(s.reached).toEqual([]);
  });

  it('when the declared Content-Length is over the limit, then 413 before any byte of the body is read', async () => {
    const socket = net.connect(s.port, '127.0.0.1');
    await once(socket, 'connect');
    socket.write(`POST /sync HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: ${DRAIN_MAX_BYTES * 4}\r\n\r\n{`);
    let text = '';
    socket.setEncoding('utf8');
    socket.on('data', (c: string) => (text += c));
    while (!text.includes('\r\n\r\n{')) await new Promise((r) => setTimeout(r, 10));
    socket.destroy();
    expect(text.split('\r\n')[0]).toBe('HTTP/1.1 413 Payload Too Large');
    expect(s.reached).toEqual([]);
  });
});
