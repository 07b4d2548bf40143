/**
 * The HTTP/2 unary transport against the services' real gRPC server (grpc-js, through our kit) and,
 * for what a well-behaved server never sends, against a bare HTTP/2 server: every way a call can end
 * gives the status grpc-js would give.
 */
import http2 from 'node:http2';
import { status as Status } from '@grpc/grpc-js';
import { syncPb, PROTO_FILES } from '@ptw/proto';
import { createClient } from './client';
import { CONNECT_TIMEOUT_MS, Http2UnaryChannel, parseTarget, type UnaryDefinition } from './http2-unary';
import { implement, MAX_DETAILS_BYTES, startGrpcServer, type GrpcServerHandle } from './server';
import { createLogger } from '../logger';
import { Metrics } from '../metrics';
import { DEV_JWT_SECRET } from '../auth/dev';
import { createTokenVerifier, mintToken } from '../auth/tokens';
import { AppError, DETAILS_METADATA_KEY } from '../errors';
import net from 'node:net';

const auth = { PTW_JWT_SECRET: DEV_JWT_SECRET, PTW_JWT_ALG: 'HS256' as const, PTW_JWT_ISSUER: 'ptw-dev', PTW_JWT_AUDIENCE: 'ptw-api' };
const stats = { since: '' };
let token: string;
let serial = 0;

/** A port nothing listens on (taken from the OS, then released). */
function freePortForTest(): Promise<number> {
  return new Promise((resolve) => {
    const probe = net.createServer().listen(0, '127.0.0.1', () => {
      const { port } = probe.address() as net.AddressInfo;
      probe.close(() => resolve(port));
    });
  });
}

/** What the kit server's getSyncStats does; set per test. */
let behaviour: (signal: AbortSignal) => Promise<{ applied: number; conflicts: number; rejected: number }> = async () => ({ applied: 1, conflicts: 0, rejected: 0 });

async function kitServer(listen = '127.0.0.1:0'): Promise<GrpcServerHandle> {
  const kit = { log: createLogger('h2', { stdout: false }), metrics: new Metrics(`h2${++serial}`), verify: createTokenVerifier(auth) };
  const implementation = implement(syncPb.SyncServiceService, { getSyncStats: (_req, ctx) => behaviour(ctx.signal) }, kit);
  return startGrpcServer({ listen, services: [{ name: 'ptw.sync.v1.SyncService', definition: syncPb.SyncServiceService, implementation }], protoFiles: [PROTO_FILES.sync] });
}

beforeAll(async () => {
  token = await mintToken(auth, { user: 'svc', role: 'service', projects: [], ttlSeconds: 600 });
});

describe('parseTarget', () => {
  it('when the target is host:port, dns:, ipv4: or [v6]:port, then its addresses; when it is unix: or has no port, then grpc-js keeps it', () => {
    expect(parseTarget('sync:15051')).toEqual({ names: [{ host: 'sync', port: 15051 }], resolve: true });
    expect(parseTarget('dns:///sync:15051')).toEqual({ names: [{ host: 'sync', port: 15051 }], resolve: true });
    expect(parseTarget('127.0.0.1:15051')).toEqual({ names: [{ host: '127.0.0.1', port: 15051 }], resolve: false });
    expect(parseTarget('[::1]:15051')).toEqual({ names: [{ host: '::1', port: 15051 }], resolve: false });
    expect(parseTarget('ipv4:10.0.0.1:1,10.0.0.2:2')).toEqual({
      names: [
        { host: '10.0.0.1', port: 1 },
        { host: '10.0.0.2', port: 2 },
      ],
      resolve: false,
    });
    for (const t of ['unix:/tmp/s.sock', 'sync', 'sync:0', 'sync:99999', 'ipv4:sync:1', 'ipv6:[::1]:1']) expect([t, parseTarget(t)]).toEqual([t, undefined]);
  });
});

describe("against the services' gRPC server", () => {
  let server: GrpcServerHandle;
  let client: ReturnType<typeof createClient<syncPb.SyncServiceClient>>;
  beforeAll(async () => {
    server = await kitServer();
    client = createClient(syncPb.SyncServiceClient, `localhost:${server.port}`, { defaultDeadlineMs: 5000 });
  });
  afterAll(async () => {
    client.close();
    await server.stop(100);
  });
  afterEach(() => {
    behaviour = async () => ({ applied: 1, conflicts: 0, rejected: 0 });
  });

  it('when the target is a name, then it is resolved and the call answers', async () => {
    expect(await client.call.getSyncStats(stats, { token })).toEqual({ applied: 1, conflicts: 0, rejected: 0 });
  });

  it('when the handler fails with details, then the call fails with its code, message and the details metadata', async () => {
    behaviour = async () => {
      throw new AppError(Status.FAILED_PRECONDITION, 'Permit is closed: «no» edits', { server_version: 3 });
    };
    const err = await client.call.getSyncStats(stats, { token }).catch((e: unknown) => e);
    expect(err).toMatchObject({ code: Status.FAILED_PRECONDITION, details: 'Permit is closed: «no» edits' });
    const details = (err as { metadata: { get(k: string): unknown[] } }).metadata.get(DETAILS_METADATA_KEY)[0] as Buffer;
    expect(JSON.parse(details.toString('utf8'))).toEqual({ server_version: 3 });
  });

  it('when the details are as large as the kit lets them be (capDetails), then they arrive whole', async () => {
    // One string field just under MAX_DETAILS_BYTES: sent as is, base64 in a trailer of ~22 KiB.
    const note = 'é'.repeat(Math.floor((MAX_DETAILS_BYTES - 20) / 2));
    behaviour = async () => {
      throw new AppError(Status.ABORTED, 'conflict', { note });
    };
    const err = await client.call.getSyncStats(stats, { token }).catch((e: unknown) => e);
    expect(err).toMatchObject({ code: Status.ABORTED, details: 'conflict' });
    const details = (err as { metadata: { get(k: string): unknown[] } }).metadata.get(DETAILS_METADATA_KEY)[0] as Buffer;
    expect(JSON.parse(details.toString('utf8'))).toEqual({ note });
  });

  it('when the token is refused, then UNAUTHENTICATED', async () => {
    await expect(client.call.getSyncStats(stats, { token: 'forged' })).rejects.toMatchObject({ code: Status.UNAUTHENTICATED });
  });

  it('when the deadline passes, then DEADLINE_EXCEEDED at the deadline and the handler sees the call end', async () => {
    let handlerAborted: Promise<void> = Promise.resolve();
    behaviour = (signal) =>
      new Promise((resolve) => {
        handlerAborted = new Promise((seen) => signal.addEventListener('abort', () => (seen(), resolve({ applied: 0, conflicts: 0, rejected: 0 }))));
      });
    const t0 = Date.now();
    await expect(client.call.getSyncStats(stats, { token, deadlineMs: 300 })).rejects.toMatchObject({ code: Status.DEADLINE_EXCEEDED });
    expect(Date.now() - t0).toBeGreaterThanOrEqual(290);
    expect(Date.now() - t0).toBeLessThan(2000);
    await handlerAborted;
  });

  it("when the caller's signal aborts, then CANCELLED; an already aborted signal makes no call", async () => {
    behaviour = () => new Promise(() => undefined);
    const caller = new AbortController();
    const pending = client.call.getSyncStats(stats, { token, signal: caller.signal });
    setTimeout(() => caller.abort(), 50);
    await expect(pending).rejects.toMatchObject({ code: Status.CANCELLED });
    await expect(client.call.getSyncStats(stats, { token, signal: caller.signal })).rejects.toMatchObject({ code: Status.CANCELLED });
  });

  it('when a header cannot be sent over HTTP/2, then INTERNAL for that call only; the connection keeps serving', async () => {
    const channel = new Http2UnaryChannel(parseTarget(`127.0.0.1:${server.port}`)!, 1024 * 1024);
    const def = { path: '/ptw.sync.v1.SyncService/GetSyncStats', requestSerialize: () => Buffer.alloc(0), responseDeserialize: (b: Buffer) => b.length };
    try {
      await expect(channel.call(def, {}, { authorization: `Bearer ${token}`, connection: 'keep-alive' }, 5000)).rejects.toMatchObject({
        code: Status.INTERNAL,
        details: expect.stringMatching(/^Call not sent/),
      });
      await expect(channel.call(def, {}, { authorization: `Bearer ${token}` }, 5000)).resolves.toBeGreaterThan(0);
    } finally {
      channel.close();
    }
  });

  it('when the method is not served, then UNIMPLEMENTED', async () => {
    const channel = new Http2UnaryChannel(parseTarget(`127.0.0.1:${server.port}`)!, 1024);
    const def: UnaryDefinition = { path: '/ptw.sync.v1.SyncService/NoSuchMethod', requestSerialize: () => Buffer.alloc(0), responseDeserialize: (b) => b };
    try {
      await expect(channel.call(def, {}, { authorization: `Bearer ${token}` }, 5000)).rejects.toMatchObject({ code: Status.UNIMPLEMENTED });
    } finally {
      channel.close();
    }
  });
});

describe('when the server goes away', () => {
  it('when nothing listens, then UNAVAILABLE at once; when the server comes up on that port, then calls answer again within the backoff', async () => {
    const port = await freePortForTest();
    const client = createClient(syncPb.SyncServiceClient, `127.0.0.1:${port}`, { defaultDeadlineMs: 5000 });
    try {
      const t0 = Date.now();
      await expect(client.call.getSyncStats(stats, { token })).rejects.toMatchObject({ code: Status.UNAVAILABLE });
      // In backoff: refused without a connection attempt.
      await expect(client.call.getSyncStats(stats, { token })).rejects.toMatchObject({ code: Status.UNAVAILABLE });
      expect(Date.now() - t0).toBeLessThan(1000);
      const server = await kitServer(`127.0.0.1:${port}`);
      try {
        let answered = false;
        for (const until = Date.now() + 5000; !answered && Date.now() < until; await new Promise((r) => setTimeout(r, 100))) {
          answered = await client.call.getSyncStats(stats, { token }).then(
            () => true,
            (e: { code: number }) => (expect(e.code).toBe(Status.UNAVAILABLE), false),
          );
        }
        expect(answered).toBe(true);
      } finally {
        await server.stop(100);
      }
    } finally {
      client.close();
    }
  });

  it("when one of the target's addresses refuses connections, then every call goes to the others, the first one included", async () => {
    const live = await kitServer();
    const dead = await freePortForTest();
    const client = createClient(syncPb.SyncServiceClient, `ipv4:127.0.0.1:${dead},127.0.0.1:${live.port}`, { defaultDeadlineMs: 5000 });
    try {
      const answers = [];
      for (let i = 0; i < 20; i++) answers.push((await client.call.getSyncStats(stats, { token })).applied);
      expect(answers).toEqual(Array(20).fill(1));
    } finally {
      client.close();
      await live.stop(100);
    }
  });

  it('when the server shuts down (GOAWAY) and a new one starts on its port, then the next calls reach the new server', async () => {
    const first = await kitServer();
    const port = first.port;
    const client = createClient(syncPb.SyncServiceClient, `127.0.0.1:${port}`, { defaultDeadlineMs: 5000 });
    try {
      expect((await client.call.getSyncStats(stats, { token })).applied).toBe(1);
      await first.stop(100);
      behaviour = async () => ({ applied: 2, conflicts: 0, rejected: 0 });
      const second = await kitServer(`127.0.0.1:${port}`);
      try {
        let applied = 0;
        for (const until = Date.now() + 5000; applied !== 2 && Date.now() < until; await new Promise((r) => setTimeout(r, 100))) {
          applied = await client.call.getSyncStats(stats, { token }).then(
            (r) => r.applied,
            (e: { code: number }) => (expect(e.code).toBe(Status.UNAVAILABLE), 0),
          );
        }
        expect(applied).toBe(2);
      } finally {
        await second.stop(100);
      }
    } finally {
      behaviour = async () => ({ applied: 1, conflicts: 0, rejected: 0 });
      client.close();
    }
  });
});

describe('when the peer accepts TCP and never speaks HTTP/2', () => {
  it('when a call is made, then it fails UNAVAILABLE at the connect timeout, long before its deadline', async () => {
    const sockets = new Set<net.Socket>();
    // Takes connections and says nothing: no SETTINGS, no answer (a hung process, a wrong port).
    const silent = net.createServer((socket) => sockets.add(socket.on('error', () => undefined)));
    await new Promise<void>((r) => silent.listen(0, '127.0.0.1', r));
    const client = createClient(syncPb.SyncServiceClient, `127.0.0.1:${(silent.address() as net.AddressInfo).port}`, { defaultDeadlineMs: 20_000 });
    try {
      const t0 = Date.now();
      await expect(client.call.getSyncStats(stats, { token })).rejects.toMatchObject({ code: Status.UNAVAILABLE });
      const took = Date.now() - t0;
      expect(took).toBeGreaterThanOrEqual(CONNECT_TIMEOUT_MS - 50);
      expect(took).toBeLessThan(CONNECT_TIMEOUT_MS + 3000);
      expect(sockets.size).toBeGreaterThan(0);
    } finally {
      client.close();
      for (const s of sockets) s.destroy();
      await new Promise((r) => silent.close(r));
    }
  }, 15_000);
});

describe('against a server that breaks the protocol', () => {
  let server: http2.Http2Server;
  let channel: Http2UnaryChannel;
  const sockets = new Set<net.Socket>();
  /** How the bare server answers the next stream. */
  let answer: (stream: http2.ServerHttp2Stream) => void;
  const def: UnaryDefinition = { path: '/t.T/Call', requestSerialize: () => Buffer.from('hi'), responseDeserialize: (b) => b.toString('utf8') };
  /** A gRPC length-prefixed message. */
  const frame = (payload: Buffer, flag = 0) => {
    const b = Buffer.alloc(5 + payload.length);
    b[0] = flag;
    b.writeUInt32BE(payload.length, 1);
    payload.copy(b, 5);
    return b;
  };
  const ok = (stream: http2.ServerHttp2Stream, body: Buffer) => {
    stream.respond({ ':status': 200, 'content-type': 'application/grpc' }, { waitForTrailers: true });
    stream.once('wantTrailers', () => stream.sendTrailers({ 'grpc-status': '0' }));
    stream.end(body);
  };

  beforeAll(async () => {
    server = http2.createServer();
    server.on('connection', (socket: net.Socket) => sockets.add(socket.once('close', () => sockets.delete(socket))));
    server.on('stream', (stream) => {
      stream.on('data', () => undefined);
      stream.on('error', () => undefined);
      answer(stream);
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    channel = new Http2UnaryChannel(parseTarget(`127.0.0.1:${(server.address() as { port: number }).port}`)!, 64 * 1024);
  });
  afterAll(async () => {
    channel.close();
    await new Promise((r) => server.close(r));
  });

  const call = () => channel.call(def, {}, { authorization: 'Bearer t' }, 5000);

  it('when the answer is well formed, then its message', async () => {
    answer = (s) => ok(s, frame(Buffer.from('hello')));
    await expect(call()).resolves.toBe('hello');
  });

  it('when the status comes in the headers alone (trailers-only) with a percent-encoded message, then that status and message', async () => {
    answer = (s) => s.respond({ ':status': 200, 'content-type': 'application/grpc', 'grpc-status': '5', 'grpc-message': 'no%20such%20permit' }, { endStream: true });
    await expect(call()).rejects.toMatchObject({ code: Status.NOT_FOUND, details: 'no such permit' });
  });

  it('when the HTTP status is not 200, then the gRPC code of that status', async () => {
    answer = (s) => s.respond({ ':status': 503 }, { endStream: true });
    await expect(call()).rejects.toMatchObject({ code: Status.UNAVAILABLE });
    answer = (s) => s.respond({ ':status': 404 }, { endStream: true });
    await expect(call()).rejects.toMatchObject({ code: Status.UNIMPLEMENTED });
  });

  it('when the stream is reset as refused, then UNAVAILABLE; reset otherwise, then INTERNAL', async () => {
    answer = (s) => s.close(http2.constants.NGHTTP2_REFUSED_STREAM);
    await expect(call()).rejects.toMatchObject({ code: Status.UNAVAILABLE });
    answer = (s) => s.close(http2.constants.NGHTTP2_INTERNAL_ERROR);
    await expect(call()).rejects.toMatchObject({ code: Status.INTERNAL });
  });

  it('when the connection drops mid-call (the server process died), then UNAVAILABLE, and the next call connects again', async () => {
    // What a killed process leaves: its sockets closed under the streams.
    answer = () => {
      for (const socket of sockets) socket.destroy();
    };
    await expect(call()).rejects.toMatchObject({ code: Status.UNAVAILABLE, details: expect.stringMatching(/Connection dropped/) });
    answer = (s) => ok(s, frame(Buffer.from('again')));
    await expect(call()).resolves.toBe('again');
  });

  it('when the response is larger than the cap, then RESOURCE_EXHAUSTED', async () => {
    answer = (s) => ok(s, frame(Buffer.alloc(200 * 1024, 1)));
    await expect(call()).rejects.toMatchObject({ code: Status.RESOURCE_EXHAUSTED });
  });

  it('when the message is compressed, cut short or missing, or the call ends without a status, then INTERNAL', async () => {
    answer = (s) => ok(s, frame(Buffer.from('x'), 1));
    await expect(call()).rejects.toMatchObject({ code: Status.INTERNAL, details: expect.stringMatching(/Compressed/) });
    answer = (s) => ok(s, frame(Buffer.from('hello')).subarray(0, 7));
    await expect(call()).rejects.toMatchObject({ code: Status.INTERNAL, details: expect.stringMatching(/framing/) });
    answer = (s) => ok(s, Buffer.alloc(0));
    await expect(call()).rejects.toMatchObject({ code: Status.INTERNAL, details: 'No message received' });
    answer = (s) => {
      s.respond({ ':status': 200, 'content-type': 'application/grpc' });
      s.end(frame(Buffer.from('hello')));
    };
    await expect(call()).rejects.toMatchObject({ code: Status.INTERNAL, details: 'Server ended the call without a status' });
  });
});
