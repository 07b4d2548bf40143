/**
 * The request middleware on a real HTTP server: request ids, the access line, and the hook that
 * cancels a backend call when the client goes away (registered when the call starts, so it must
 * still see a client that left before).
 */
import http from 'node:http';
import net from 'node:net';
import { once } from 'node:events';
import { PassThrough } from 'node:stream';
import Koa from 'koa';
import { createLogger, Metrics } from '@ptw/common';
import { onDisconnect, requestMiddleware } from './request';

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
  // eslint-disable-next-line @typescript-eslint/no-misused-promises -- Koa's callback handles its own errors (ctx.onerror): its promise never rejects
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

describe('onDisconnect', () => {
  it('cancels when the client leaves while the backend call is pending', async () => {
    let cancelled!: Promise<void>;
    const s = await serve(async (ctx) => {
      cancelled = new Promise<void>((resolve) => onDisconnect(ctx)(resolve));
      await cancelled;
      ctx.body = { late: true };
    });
    try {
      await leaveEarly(s.port, '/slow');
      await within(cancelled, 2000, 'cancel');
    } finally {
      await s.close();
    }
  });

  it('cancels at once when the call starts after the client left', async () => {
    let seen: boolean | undefined;
    const s = await serve(async (ctx) => {
      await once(ctx.res, 'close');
      let cancelled = false;
      onDisconnect(ctx)(() => (cancelled = true));
      seen = cancelled;
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

  it('never cancels for a response that was written, nor once unhooked', async () => {
    let cancels = 0;
    const listenersAfterUnhook: number[] = [];
    const s = await serve(async (ctx) => {
      onDisconnect(ctx)(() => cancels++);
      const before = ctx.res.listenerCount('close');
      const unhook = onDisconnect(ctx)(() => cancels++);
      unhook();
      listenersAfterUnhook.push(ctx.res.listenerCount('close') - before);
      ctx.body = { ok: true };
    });
    try {
      for (let i = 0; i < 3; i++) expect((await fetch(`${s.url}/x`)).status).toBe(200);
      await new Promise((resolve) => setTimeout(resolve, 50));
      expect(cancels).toBe(0);
      expect(listenersAfterUnhook).toEqual([0, 0, 0]);
    } finally {
      await s.close();
    }
  });

  it('cancels an unhooked call no more: a client leaving after the call ended changes nothing', async () => {
    let cancels = 0;
    let unhooked!: Promise<void>;
    const s = await serve(async (ctx) => {
      unhooked = (async () => onDisconnect(ctx)(() => cancels++)())();
      await unhooked;
      await once(ctx.res, 'close');
    });
    try {
      await leaveEarly(s.port, '/slow');
      await within(unhooked, 2000, 'unhook');
      await new Promise((resolve) => setTimeout(resolve, 100));
      expect(cancels).toBe(0);
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
