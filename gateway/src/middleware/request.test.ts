/**
 * The request middleware on a real HTTP server: request ids, the access line, and the signal that
 * cancels a backend call when the client goes away (made lazily, so it must still see a client that
 * left before it was asked for).
 */
import http from 'node:http';
import net from 'node:net';
import { once } from 'node:events';
import { PassThrough } from 'node:stream';
import Koa from 'koa';
import { createLogger, Metrics } from '@ptw/common';
import { disconnectSignal, requestMiddleware } from './request';

interface Served {
  url: string;
  port: number;
  lines: () => Record<string, unknown>[];
  close(): Promise<void>;
}

async function serve(route: Koa.Middleware): Promise<Served> {
  const sink = new PassThrough();
  let text = '';
  sink.on('data', (chunk: Buffer) => (text += chunk.toString()));
  const app = new Koa();
  app.silent = true;
  app.use(requestMiddleware(createLogger('gateway', { stdout: false, sink }), new Metrics('gateway')));
  app.use(route);
  const server = http.createServer(app.callback());
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const port = (server.address() as net.AddressInfo).port;
  return {
    url: `http://127.0.0.1:${port}`,
    port,
    lines: () =>
      text
        .split('\n')
        .filter(Boolean)
        .map((l) => JSON.parse(l) as Record<string, unknown>),
    close: async () => {
      server.closeAllConnections();
      await new Promise((resolve) => server.close(resolve));
    },
  };
}

/** Sends a GET and destroys the socket once the request has been written (the client leaves). */
async function leaveEarly(port: number, path: string): Promise<void> {
  const socket = net.connect(port, '127.0.0.1');
  await once(socket, 'connect');
  socket.write(`GET ${path} HTTP/1.1\r\nHost: localhost\r\n\r\n`);
  await new Promise((resolve) => setTimeout(resolve, 50));
  socket.destroy();
}

const within = <T>(p: Promise<T>, ms: number, what: string) =>
  Promise.race([p, new Promise<never>((_, reject) => setTimeout(() => reject(new Error(`${what} did not happen within ${ms} ms`)), ms))]);

describe('disconnectSignal', () => {
  it('aborts when the client leaves while the backend call is pending', async () => {
    let aborted!: Promise<unknown>;
    const s = await serve(async (ctx) => {
      const signal = disconnectSignal(ctx);
      expect(signal.aborted).toBe(false);
      aborted = once(signal, 'abort');
      await aborted;
      ctx.body = { late: true };
    });
    try {
      await leaveEarly(s.port, '/slow');
      await within(aborted, 2000, 'abort');
    } finally {
      await s.close();
    }
  });

  it('is already aborted when first asked for after the client left', async () => {
    let seen: boolean | undefined;
    const s = await serve(async (ctx) => {
      await once(ctx.res, 'close');
      seen = disconnectSignal(ctx).aborted;
    });
    try {
      await leaveEarly(s.port, '/slow');
      await within(
        (async () => {
          while (seen === undefined) await new Promise((resolve) => setTimeout(resolve, 10));
        })(),
        2000,
        'the route',
      );
      expect(seen).toBe(true);
    } finally {
      await s.close();
    }
  });

  it('is never aborted for a response that was written, and is made once per request', async () => {
    const signals: AbortSignal[] = [];
    const s = await serve(async (ctx) => {
      const first = disconnectSignal(ctx);
      expect(disconnectSignal(ctx)).toBe(first);
      signals.push(first);
      ctx.body = { ok: true };
    });
    try {
      for (let i = 0; i < 3; i++) expect((await fetch(`${s.url}/x`)).status).toBe(200);
      await new Promise((resolve) => setTimeout(resolve, 50));
      expect(signals).toHaveLength(3);
      expect(new Set(signals).size).toBe(3);
      expect(signals.every((sig) => !sig.aborted)).toBe(true);
    } finally {
      await s.close();
    }
  });
});

describe('requestMiddleware', () => {
  it('answers with the request id it logs, one access line per request', async () => {
    const s = await serve(async (ctx) => {
      ctx.body = { ok: true };
    });
    try {
      const given = await fetch(`${s.url}/a`, { headers: { 'x-request-id': 'req-given-1' } });
      const made = await fetch(`${s.url}/b`);
      expect(given.headers.get('x-request-id')).toBe('req-given-1');
      const madeId = made.headers.get('x-request-id');
      expect(madeId).toMatch(/^[0-9a-f-]{36}$/);
      await new Promise((resolve) => setTimeout(resolve, 50));
      const access = s.lines().filter((l) => l.event === 'http_access');
      expect(access.map((l) => [l.req_id, l.status_code])).toEqual([
        ['req-given-1', 200],
        [madeId, 200],
      ]);
    } finally {
      await s.close();
    }
  });
});
