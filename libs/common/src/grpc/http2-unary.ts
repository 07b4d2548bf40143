/**
 * Unary gRPC calls over Node's own HTTP/2 client: the wire protocol of gRPC over HTTP/2 (length-
 * prefixed message, `grpc-timeout`, status and metadata in trailers), without grpc-js's per-call
 * machinery (resolving, retrying, load-balancing and subchannel call layers, filters, interceptors),
 * which cost the gateway about a third of its CPU per proxied request (docs/benchmarks.md "The gRPC hop").
 *
 * Kept by the rule of docs/decisions/grpc-transport.md (it measured ≥ 1.2× on the full sync through
 * the gateway against grpc-js's client); that record says how to remove it.
 *
 * What it keeps of the channel the services used before: one HTTP/2 connection per address the
 * target names or resolves to, calls spread over them in turn (round robin), a connection that
 * failed tried again after 250 ms doubling to 3 s (calls meanwhile fail fast with UNAVAILABLE, as
 * grpc-js does without wait-for-ready), a keepalive ping every 30 s, an 8 MiB cap on a response,
 * and the status codes grpc-js gives for each failure (connection lost → UNAVAILABLE, deadline →
 * DEADLINE_EXCEEDED, cancel → CANCELLED, a reset stream by its HTTP/2 code). A connection is ready
 * once the peer's HTTP/2 SETTINGS arrive, as in grpc-js; one that has not got there within
 * {@link CONNECT_TIMEOUT_MS} is dropped, so its calls fail UNAVAILABLE instead of waiting out their
 * deadline on a peer that accepted TCP and never spoke HTTP/2.
 *
 * Streaming calls and health checks still go through grpc-js: see createClient.
 */
import dns from 'node:dns';
import http2 from 'node:http2';
import net from 'node:net';
import { Metadata, status as Status, type ServiceError } from '@grpc/grpc-js';

const { NGHTTP2_CANCEL, NGHTTP2_REFUSED_STREAM, NGHTTP2_ENHANCE_YOUR_CALM } = http2.constants;

export interface UnaryDefinition {
  path: string;
  requestSerialize(value: unknown): Buffer;
  responseDeserialize(bytes: Buffer): unknown;
}

/** One address to connect to and the `:authority` the calls name. */
interface Endpoint {
  host: string;
  port: number;
  authority: string;
}

/**
 * The addresses of a grpc-js target string this transport can serve: `host:port`, `dns:host:port`,
 * `dns:///host:port`, `ipv4:a:port,b:port`, `[v6]:port`. Undefined for anything else (`unix:`,
 * `ipv6:` lists, a missing port): those stay on grpc-js.
 */
export function parseTarget(target: string): { names: { host: string; port: number }[]; resolve: boolean } | undefined {
  const hostPort = (s: string) => {
    const m = /^(?:\[([0-9a-fA-F:.]+)\]|([^\s:/[\]]+)):(\d{1,5})$/.exec(s);
    if (!m) return undefined;
    const port = Number(m[3]);
    return port > 0 && port < 65536 ? { host: m[1] ?? m[2], port } : undefined;
  };
  if (target.startsWith('ipv4:')) {
    const names = target.slice(5).split(',').map(hostPort);
    return names.length > 0 && names.every((n) => n && net.isIPv4(n.host)) ? { names: names as { host: string; port: number }[], resolve: false } : undefined;
  }
  const dnsTarget = /^dns:(?:\/\/[^/]*\/)?(.*)$/.exec(target);
  const one = hostPort(dnsTarget ? dnsTarget[1] : target);
  return one ? { names: [one], resolve: net.isIP(one.host) === 0 } : undefined;
}

const INITIAL_BACKOFF_MS = 250;
const MAX_BACKOFF_MS = 3000;
const KEEPALIVE_MS = 30_000;
const KEEPALIVE_TIMEOUT_MS = 20_000;
/** From the TCP connect to the peer's first SETTINGS frame, at most. */
export const CONNECT_TIMEOUT_MS = 3000;

class Connection {
  session: http2.ClientHttp2Session;
  /** Connected and not closing: calls go here first. */
  ready = false;
  /** True once connected, false when closed before that. */
  readonly settled: Promise<boolean>;
  private keepalive: NodeJS.Timeout;

  constructor(
    readonly endpoint: Endpoint,
    onConnect: () => void,
    onGone: (conn: Connection, failedToConnect: boolean) => void,
  ) {
    let connected = false;
    let settle!: (ok: boolean) => void;
    this.settled = new Promise((resolve) => (settle = resolve));
    const session = http2.connect(`http://${endpoint.authority}`, {
      createConnection: () => net.connect({ host: endpoint.host, port: endpoint.port, noDelay: true }),
      // Room for several 8 MiB responses at once (the default is 10 MB per session).
      maxSessionMemory: 64,
    });
    this.session = session;
    const connectTimer = setTimeout(() => session.destroy(), CONNECT_TIMEOUT_MS).unref();
    // Ready when the peer has spoken HTTP/2 (its SETTINGS), not when TCP connects: grpc-js's rule too.
    session.once('remoteSettings', () => {
      clearTimeout(connectTimer);
      connected = true;
      this.ready = true;
      settle(true);
      onConnect();
    });
    // A lost connection fails its calls (each sees its stream close without a status); the error
    // itself needs no handler beyond this one.
    session.on('error', () => undefined);
    // The server is going away (graceful shutdown): no new call on this connection.
    session.once('goaway', () => {
      this.ready = false;
      onGone(this, false);
    });
    session.once('close', () => {
      this.ready = false;
      clearTimeout(connectTimer);
      clearInterval(this.keepalive);
      settle(false);
      onGone(this, !connected);
    });
    // Neither the connection nor its pings keep a process alive.
    session.unref();
    this.keepalive = setInterval(() => this.ping(), KEEPALIVE_MS).unref();
  }

  private ping(): void {
    if (this.session.destroyed || this.session.connecting) return;
    const timer = setTimeout(() => this.session.destroy(), KEEPALIVE_TIMEOUT_MS).unref();
    const sent = this.session.ping((err) => {
      clearTimeout(timer);
      if (err) this.session.destroy();
    });
    if (!sent) clearTimeout(timer);
  }

  usable(): boolean {
    return !this.session.closed && !this.session.destroyed;
  }

  close(): void {
    clearInterval(this.keepalive);
    this.session.close();
  }
}

/** A message in gRPC's length-prefixed framing, uncompressed (gRPC over HTTP/2: flag byte, 4-byte length). */
export function grpcFrame(message: Uint8Array): Buffer {
  const frame = Buffer.allocUnsafe(5 + message.length);
  frame[0] = 0;
  frame.writeUInt32BE(message.length, 1);
  frame.set(message, 5);
  return frame;
}

/** A status error as grpc-js makes them (`code`, `details`, `metadata`; message `<code> <NAME>: <details>`). */
export function serviceError(code: Status, details: string, metadata = new Metadata()): ServiceError {
  return Object.assign(new Error(`${code} ${Status[code]}: ${details}`), { code, details, metadata });
}

/** gRPC's mapping of an HTTP status that is not 200 (the gRPC over HTTP/2 specification). */
function fromHttpStatus(httpStatus: number): Status {
  if (httpStatus === 400) return Status.INTERNAL;
  if (httpStatus === 401) return Status.UNAUTHENTICATED;
  if (httpStatus === 403) return Status.PERMISSION_DENIED;
  if (httpStatus === 404) return Status.UNIMPLEMENTED;
  if (httpStatus === 429 || httpStatus === 502 || httpStatus === 503 || httpStatus === 504) return Status.UNAVAILABLE;
  return Status.UNKNOWN;
}

function decodeMessage(value: string | string[] | undefined): string {
  const raw = Array.isArray(value) ? value[0] : (value ?? '');
  try {
    return decodeURIComponent(raw);
  } catch {
    return raw;
  }
}

/** One target's connections and its calls. */
export class Http2UnaryChannel {
  private endpoints: Endpoint[] | undefined;
  private resolving: Promise<Endpoint[]> | undefined;
  private readonly connections = new Map<string, Connection>();
  /** Per address (host|port): when to try connecting again and the next backoff. */
  private readonly retry = new Map<string, { until: number; backoff: number }>();
  private turn = 0;
  private closed = false;

  constructor(
    private readonly target: { names: { host: string; port: number }[]; resolve: boolean },
    private readonly maxResponseBytes: number,
  ) {
    if (!target.resolve) this.endpoints = target.names.map(({ host, port }) => ({ host, port, authority: net.isIPv6(host) ? `[${host}]:${port}` : `${host}:${port}` }));
  }

  /** Every address of the target: resolved by DNS once, and again after a connection is lost. */
  private async addresses(): Promise<Endpoint[]> {
    if (this.endpoints) return this.endpoints;
    this.resolving ??= (async () => {
      try {
        const found: Endpoint[] = [];
        for (const { host, port } of this.target.names) {
          for (const a of await dns.promises.lookup(host, { all: true })) found.push({ host: a.address, port, authority: `${host}:${port}` });
        }
        if (found.length > 0) this.endpoints = found;
        return found;
      } finally {
        this.resolving = undefined;
      }
    })();
    return this.resolving;
  }

  /** The usable connection to `endpoint`, made when missing; undefined while the address is in backoff. */
  private connectionTo(endpoint: Endpoint, now: number): Connection | undefined {
    const key = `${endpoint.host}|${endpoint.port}`;
    let conn = this.connections.get(key);
    if (conn && !conn.usable()) {
      this.connections.delete(key);
      conn = undefined;
    }
    if (conn) return conn;
    const r = this.retry.get(key);
    if (r && r.until > now) return undefined;
    conn = new Connection(
      endpoint,
      () => this.retry.delete(key),
      (gone, failedToConnect) => {
        if (this.connections.get(key) === gone) this.connections.delete(key);
        if (failedToConnect) {
          const backoff = this.retry.get(key)?.backoff ?? INITIAL_BACKOFF_MS;
          this.retry.set(key, { until: Date.now() + backoff, backoff: Math.min(backoff * 2, MAX_BACKOFF_MS) });
        }
        // A name may point elsewhere now (a replaced container).
        if (this.target.resolve) this.endpoints = undefined;
      },
    );
    this.connections.set(key, conn);
    return conn;
  }

  /**
   * The next connected address in turn (round robin over the ready ones, as grpc-js's round_robin
   * picks only READY subchannels). When none is connected yet, every address not in backoff is being
   * connected: the call waits for the first to succeed and fails UNAVAILABLE when all fail.
   */
  private pick(endpoints: Endpoint[]): Connection | Promise<Connection | undefined> | undefined {
    const now = Date.now();
    const connecting: Connection[] = [];
    for (let i = 0; i < endpoints.length; i++) {
      const at = (this.turn + i) % endpoints.length;
      const conn = this.connectionTo(endpoints[at], now);
      if (!conn) continue;
      if (conn.ready) {
        this.turn = (at + 1) % endpoints.length;
        return conn;
      }
      connecting.push(conn);
    }
    if (connecting.length === 0) return undefined;
    return new Promise((resolve) => {
      let left = connecting.length;
      for (const conn of connecting) void conn.settled.then((ok) => (ok ? resolve(conn) : --left === 0 && resolve(undefined)));
    });
  }

  /**
   * Makes one unary call: `headers` are the call's metadata (lower-case ASCII names and values),
   * `deadlineMs` its deadline from now; `onCancel` (see CancelHook) cancels it.
   */
  call(def: UnaryDefinition, request: unknown, headers: Record<string, string>, deadlineMs: number, onCancel?: (cancel: () => void) => () => void): Promise<unknown> {
    if (this.closed) return Promise.reject(serviceError(Status.UNAVAILABLE, 'Channel has been shut down'));
    if (this.endpoints) return this.send(def, request, headers, deadlineMs, this.endpoints, onCancel);
    return this.addresses().then(
      (endpoints) =>
        endpoints.length
          ? this.send(def, request, headers, deadlineMs, endpoints, onCancel)
          : Promise.reject(serviceError(Status.UNAVAILABLE, `No address for ${this.target.names[0].host}`)),
      () => Promise.reject(serviceError(Status.UNAVAILABLE, `Name resolution failed for ${this.target.names[0].host}`)),
    );
  }

  private send(
    def: UnaryDefinition,
    request: unknown,
    headers: Record<string, string>,
    deadlineMs: number,
    endpoints: Endpoint[],
    onCancel?: (cancel: () => void) => () => void,
  ): Promise<unknown> {
    const noConnection = () => serviceError(Status.UNAVAILABLE, `No connection established to ${endpoints[0].authority}`);
    const picked = this.pick(endpoints);
    if (!picked) return Promise.reject(noConnection());
    if (picked instanceof Connection) return this.exchange(picked, def, request, headers, deadlineMs, onCancel);
    // Nothing connected yet: the deadline and the caller's cancel apply to the wait as well (the
    // caller's hook is registered once, for the wait and then the call).
    const started = Date.now();
    return new Promise((resolve, reject) => {
      let cancelNow: (() => void) | undefined = () => {
        cancelNow = undefined;
        clearTimeout(timer);
        unhook?.();
        reject(serviceError(Status.CANCELLED, 'Cancelled on client'));
      };
      const unhook = onCancel?.(() => cancelNow?.());
      const timer = setTimeout(() => {
        cancelNow = undefined;
        unhook?.();
        reject(serviceError(Status.DEADLINE_EXCEEDED, 'Deadline exceeded while connecting'));
      }, deadlineMs);
      void picked.then((conn) => {
        if (!cancelNow) return;
        cancelNow = undefined;
        clearTimeout(timer);
        if (!conn) {
          unhook?.();
          return reject(noConnection());
        }
        const hook = (cancel: () => void) => {
          cancelNow = cancel;
          return () => {
            cancelNow = undefined;
            unhook?.();
          };
        };
        this.exchange(conn, def, request, headers, deadlineMs - (Date.now() - started), onCancel ? hook : undefined).then(resolve, reject);
      });
    });
  }

  /** The call itself, on a connection. */
  private exchange(
    conn: Connection,
    def: UnaryDefinition,
    request: unknown,
    headers: Record<string, string>,
    deadlineMs: number,
    onCancel?: (cancel: () => void) => () => void,
  ): Promise<unknown> {
    return new Promise((resolve, reject) => {
      let body: Buffer;
      try {
        body = def.requestSerialize(request);
      } catch (err) {
        return reject(serviceError(Status.INTERNAL, `Request serialization failure: ${(err as Error).message}`));
      }
      const frame = grpcFrame(body);

      let stream: http2.ClientHttp2Stream;
      try {
        stream = conn.session.request({
          ':method': 'POST',
          ':path': def.path,
          'content-type': 'application/grpc',
          te: 'trailers',
          'grpc-timeout': `${Math.max(1, Math.ceil(deadlineMs))}m`,
          ...headers,
        });
      } catch (err) {
        const code = (err as { code?: string }).code;
        // The connection ran out of stream ids or was closing: the next call takes another one.
        if (code === 'ERR_HTTP2_OUT_OF_STREAMS' || code === 'ERR_HTTP2_GOAWAY_SESSION' || code === 'ERR_HTTP2_INVALID_SESSION') {
          conn.close();
          return reject(serviceError(Status.UNAVAILABLE, 'Connection is closing'));
        }
        // A metadata value HTTP/2 cannot carry (grpc-js refuses it as well, before sending).
        return reject(serviceError(Status.INTERNAL, `Call not sent: ${code ?? (err as Error).message}`));
      }

      let done = false;
      let grpcStatus: Status | undefined;
      let grpcMessage = '';
      let trailers: http2.IncomingHttpHeaders | undefined;
      let httpStatus = 0;
      let streamError: (Error & { code?: string }) | undefined;
      const chunks: Buffer[] = [];
      let received = 0;
      const finish = (outcome: { value: unknown } | { error: ServiceError }) => {
        if (done) return;
        done = true;
        clearTimeout(timer);
        unhook?.();
        if ('error' in outcome) reject(outcome.error);
        else resolve(outcome.value);
      };
      const abandon = (code: Status, details: string) => {
        finish({ error: serviceError(code, details) });
        if (!stream.closed) stream.close(NGHTTP2_CANCEL);
      };
      const timer = setTimeout(() => abandon(Status.DEADLINE_EXCEEDED, 'Deadline exceeded'), deadlineMs);
      const unhook = onCancel?.(() => abandon(Status.CANCELLED, 'Cancelled on client'));

      const takeStatus = (h: http2.IncomingHttpHeaders) => {
        if (h['grpc-status'] === undefined) return;
        const n = Number(h['grpc-status']);
        grpcStatus = Number.isInteger(n) && n >= 0 && n <= 16 ? n : Status.UNKNOWN;
        grpcMessage = decodeMessage(h['grpc-message']);
        trailers = h;
      };
      stream.on('response', (h) => {
        httpStatus = Number(h[':status']);
        takeStatus(h);
      });
      stream.on('trailers', takeStatus);
      stream.on('data', (chunk: Buffer) => {
        received += chunk.length;
        if (received > this.maxResponseBytes + 5) return abandon(Status.RESOURCE_EXHAUSTED, `Received message larger than max (${received - 5} vs. ${this.maxResponseBytes})`);
        chunks.push(chunk);
      });
      stream.on('error', (err: Error & { code?: string }) => {
        streamError = err;
      });
      stream.on('close', () => {
        if (done) return;
        if (grpcStatus === undefined) {
          if (httpStatus !== 0 && httpStatus !== 200) return finish({ error: serviceError(fromHttpStatus(httpStatus), `Received HTTP status code ${httpStatus}`) });
          const rst = stream.rstCode ?? 0;
          // The peer reset this stream (its connection is still up): grpc-js's codes for RST_STREAM.
          if (streamError?.code === 'ERR_HTTP2_STREAM_ERROR' || (!streamError && rst !== 0 && conn.usable())) {
            const code =
              rst === NGHTTP2_REFUSED_STREAM
                ? Status.UNAVAILABLE
                : rst === NGHTTP2_CANCEL
                  ? Status.CANCELLED
                  : rst === NGHTTP2_ENHANCE_YOUR_CALM
                    ? Status.RESOURCE_EXHAUSTED
                    : Status.INTERNAL;
            return finish({ error: serviceError(code, `Received RST_STREAM with code ${rst}`) });
          }
          if (streamError || !conn.usable())
            return finish({ error: serviceError(Status.UNAVAILABLE, `Connection dropped${streamError ? ` (${streamError.code ?? streamError.name})` : ''}`) });
          return finish({ error: serviceError(Status.INTERNAL, 'Server ended the call without a status') });
        }
        if (grpcStatus !== Status.OK) {
          const metadata = trailers ? Metadata.fromHttp2Headers(trailers) : new Metadata();
          metadata.remove('grpc-status');
          metadata.remove('grpc-message');
          return finish({ error: serviceError(grpcStatus, grpcMessage, metadata) });
        }
        const all = chunks.length === 1 ? chunks[0] : Buffer.concat(chunks);
        if (all.length < 5 || all.readUInt32BE(1) !== all.length - 5)
          return finish({ error: serviceError(Status.INTERNAL, all.length === 0 ? 'No message received' : 'Malformed response framing') });
        if (all[0] !== 0) return finish({ error: serviceError(Status.INTERNAL, 'Compressed response, none was asked for') });
        try {
          finish({ value: def.responseDeserialize(all.subarray(5)) });
        } catch (err) {
          finish({ error: serviceError(Status.INTERNAL, `Response deserialization failure: ${(err as Error).message}`) });
        }
      });
      stream.end(frame);
    });
  }

  close(): void {
    this.closed = true;
    for (const conn of this.connections.values()) conn.close();
    this.connections.clear();
  }
}
