import { EventEmitter } from 'node:events';
import type http2 from 'node:http2';
import { Metadata, status as Status, type Server, type ServerErrorResponse, type ServiceDefinition, type UntypedServiceImplementation } from '@grpc/grpc-js';
import { grpcFrame, serviceError } from './http2-unary';

/**
 * The services' own unary methods served straight from the HTTP/2 stream, on grpc-js's own listening
 * servers and sessions; everything else (server streams, health, reflection, unknown methods, a request
 * grpc-js must answer itself: wrong content type, compressed message) still goes to grpc-js.
 *
 * grpc-js's per-call path (its intercepting call, filters, message and metadata layers) costs about as
 * much CPU as Node's HTTP/2 stream itself: a server answering with a pre-encoded message spends 52–74 µs
 * per call where grpc-js with a trivial handler spends 105–137 µs (test/bench/grpc-hop.js measures what
 * that costs the gateway). What a unary call needs is small: the request message, the metadata, the
 * deadline (`grpc-timeout`), cancellation, the receive-size limit, and the status in trailers.
 *
 * The handlers are the same grpc-js-style functions `implement` makes (`(call, callback)`): they are
 * given a call with `request`, `metadata`, `cancelled` and the `cancelled` event, all that
 * `implement` reads. Sessions, settings (header list size), keepalive and shutdown stay grpc-js's:
 * `tryShutdown` closes each session once its streams — these included — are done.
 */

interface UnaryMethod {
  deserialize(bytes: Buffer): unknown;
  serialize(value: unknown): Buffer;
  handler: (call: DirectCall, callback: (err: ServerErrorResponse | null, value?: unknown) => void) => void;
}

/** What `implement`'s unary wrapper uses of grpc-js's ServerUnaryCall. */
class DirectCall extends EventEmitter {
  cancelled = false;
  request: unknown;
  constructor(readonly metadata: Metadata) {
    super();
  }
}

/** `grpc-timeout` in ms (gRPC over HTTP/2: up to 8 digits and a unit); undefined when absent or malformed. */
export function parseGrpcTimeout(value: string | string[] | undefined): number | undefined {
  const m = typeof value === 'string' ? /^(\d{1,8})([HMSmun])$/.exec(value) : null;
  if (!m) return undefined;
  const unitMs = { H: 3_600_000, M: 60_000, S: 1000, m: 1, u: 1e-3, n: 1e-6 }[m[2] as 'H' | 'M' | 'S' | 'm' | 'u' | 'n'];
  return Number(m[1]) * unitMs;
}

/** The metadata grpc-js's own server leaves out of a call's metadata. */
const TRANSPORT_HEADERS = ['grpc-timeout', 'grpc-encoding', 'grpc-accept-encoding', 'content-type', 'te', 'accept-encoding', 'content-length'];

const ERROR_LISTENER = () => undefined;

/** setTimeout's longest delay: a later deadline (up to 8 digits of hours) is no deadline here. */
const MAX_TIMER_MS = 2_147_483_647;

/**
 * Routes the unary methods of `services` around grpc-js's per-call path on `server`'s bound listeners
 * (call after `bindAsync`). Returns false, changing nothing, when grpc-js's internals are not what this
 * was written against (its listeners map, one `stream` listener per server): grpc-js then serves all.
 */
export function serveUnaryDirectly(
  server: Server,
  services: { definition: ServiceDefinition; implementation: UntypedServiceImplementation }[],
  maxReceiveBytes: number,
): boolean {
  const methods = new Map<string, UnaryMethod>();
  for (const { definition, implementation } of services) {
    for (const [name, def] of Object.entries(definition)) {
      if (def.requestStream || def.responseStream) continue;
      const handler = (implementation[name] ?? (def.originalName ? implementation[def.originalName] : undefined)) as UnaryMethod['handler'] | undefined;
      if (typeof handler !== 'function') continue;
      methods.set(def.path, { deserialize: def.requestDeserialize, serialize: def.responseSerialize as (v: unknown) => Buffer, handler });
    }
  }
  const listeners = (server as unknown as { http2Servers?: unknown }).http2Servers;
  if (!(listeners instanceof Map) || listeners.size === 0) return false;
  const h2Servers = [...listeners.keys()] as http2.Http2Server[];
  if (!h2Servers.every((h2) => typeof h2?.listeners === 'function' && h2.listeners('stream').length === 1)) return false;

  for (const h2 of h2Servers) {
    const grpcJs = h2.listeners('stream')[0] as (...args: unknown[]) => void;
    h2.removeListener('stream', grpcJs);
    h2.on('stream', (stream: http2.ServerHttp2Stream, headers: http2.IncomingHttpHeaders, ...rest: unknown[]) => {
      const method = direct(headers) ? methods.get(headers[':path'] as string) : undefined;
      if (method) serve(stream, headers, method, maxReceiveBytes);
      else grpcJs.call(h2, stream, headers, ...rest);
    });
  }
  return true;
}

/** A request this path may take: a gRPC POST with an uncompressed message. */
function direct(headers: http2.IncomingHttpHeaders): boolean {
  const type = headers['content-type'];
  const encoding = headers['grpc-encoding'];
  return headers[':method'] === 'POST' && (type === 'application/grpc' || type === 'application/grpc+proto') && (encoding === undefined || encoding === 'identity');
}

function serve(stream: http2.ServerHttp2Stream, headers: http2.IncomingHttpHeaders, method: UnaryMethod, maxReceiveBytes: number): void {
  // As grpc-js does: an error always comes with a 'close', which is where a lost call is handled.
  stream.on('error', ERROR_LISTENER);
  const metadata = Metadata.fromHttp2Headers(headers);
  for (const key of TRANSPORT_HEADERS) metadata.remove(key);
  const call = new DirectCall(metadata);
  let answered = false;
  let timer: NodeJS.Timeout | undefined;
  const cancel = () => {
    if (call.cancelled) return;
    call.cancelled = true;
    call.emit('cancelled', 'cancelled');
  };

  const answer = (err: ServerErrorResponse | null, value?: unknown) => {
    if (answered) return;
    answered = true;
    if (timer) clearTimeout(timer);
    if (stream.destroyed || stream.closed) return;
    let body: Buffer | undefined;
    if (!err) {
      try {
        body = method.serialize(value);
      } catch {
        err = serviceError(Status.INTERNAL, 'Failed to serialize response');
      }
    }
    try {
      if (err) {
        // Trailers-only: the status and the error's metadata in the one HEADERS frame.
        stream.respond(
          {
            ...(err.metadata?.toHttp2Headers() ?? {}),
            ':status': 200,
            'content-type': 'application/grpc',
            'grpc-status': String(err.code ?? Status.UNKNOWN),
            'grpc-message': encodeURI(err.details ?? err.message ?? ''),
          },
          { endStream: true },
        );
        return;
      }
      stream.respond({ ':status': 200, 'content-type': 'application/grpc' }, { waitForTrailers: true });
      stream.once('wantTrailers', () => stream.sendTrailers({ 'grpc-status': '0', 'grpc-message': '' }));
      stream.end(grpcFrame(body!));
    } catch {
      // The stream went away between the check and the write: nobody is left to answer.
      stream.destroy();
    }
  };

  // The caller gone (RST_STREAM, lost connection) before the answer: the handler's signal aborts.
  stream.once('close', () => {
    if (!answered) {
      answered = true;
      if (timer) clearTimeout(timer);
      cancel();
    }
  });
  const deadlineMs = parseGrpcTimeout(headers['grpc-timeout']);
  if (deadlineMs !== undefined && deadlineMs <= MAX_TIMER_MS) {
    timer = setTimeout(() => {
      answer(serviceError(Status.DEADLINE_EXCEEDED, 'Deadline exceeded'));
      cancel();
    }, Math.max(0, Math.ceil(deadlineMs)));
  }

  const chunks: Buffer[] = [];
  let received = 0;
  stream.on('data', (chunk: Buffer) => {
    if (answered) return;
    received += chunk.length;
    if (received > maxReceiveBytes + 5) {
      answer(serviceError(Status.RESOURCE_EXHAUSTED, `Received message larger than max (${received - 5} vs. ${maxReceiveBytes})`));
      cancel();
      return;
    }
    chunks.push(chunk);
  });
  stream.on('end', () => {
    if (answered) return;
    const bytes = chunks.length === 1 ? chunks[0] : Buffer.concat(chunks);
    if (bytes.length < 5) return answer(serviceError(Status.UNIMPLEMENTED, 'A unary call needs exactly one request message'));
    const length = bytes.readUInt32BE(1);
    if (bytes[0] !== 0) return answer(serviceError(Status.INTERNAL, 'Compressed message without a grpc-encoding'));
    if (bytes.length !== 5 + length) return answer(serviceError(Status.UNIMPLEMENTED, 'A unary call needs exactly one request message'));
    try {
      call.request = method.deserialize(bytes.subarray(5));
    } catch {
      // grpc-js's words, without the decoder's message (it can quote the input).
      return answer(serviceError(Status.INTERNAL, 'Error deserializing request'));
    }
    try {
      method.handler(call, answer);
    } catch {
      answer(serviceError(Status.INTERNAL, 'Internal error'));
    }
  });
}
