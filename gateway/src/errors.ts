import { AppError, DETAILS_METADATA_KEY, httpForGrpc, isServiceError, Status } from '@ptw/common';

/** The JSON error body of SPEC §4. */
export interface ErrorBody {
  error: { code: string; message: string; details?: unknown };
}

/** An HTTP-level error raised by the gateway itself (bad body, no token, unknown route…). */
export class HttpError extends Error {
  constructor(
    public readonly status: number,
    public readonly code: string,
    message: string,
    public readonly details?: unknown,
    public readonly headers: Record<string, string> = {},
  ) {
    super(message);
  }
}

function parseDetails(raw: unknown): unknown {
  if (!Buffer.isBuffer(raw) && typeof raw !== 'string') return undefined;
  try {
    return JSON.parse(raw.toString());
  } catch {
    return undefined;
  }
}

/**
 * The one mapping point from anything thrown in a request to an HTTP status and body. Unexpected
 * errors become a generic 500 (the caller logs the stack).
 */
export function toHttpError(err: unknown): { status: number; body: ErrorBody; headers: Record<string, string>; unexpected: boolean } {
  if (err instanceof HttpError) {
    return {
      status: err.status,
      headers: err.headers,
      unexpected: false,
      body: { error: { code: err.code, message: err.message, ...(err.details !== undefined ? { details: err.details } : {}) } },
    };
  }
  if (err instanceof AppError) {
    const m = httpForGrpc(err.code);
    return { status: m.http, headers: {}, unexpected: false, body: { error: { code: m.code, message: err.message, ...(err.details !== undefined ? { details: err.details } : {}) } } };
  }
  if (isServiceError(err)) {
    // No service throttles over gRPC: RESOURCE_EXHAUSTED on the hop is a message past a size limit
    // (answers are capped where they are built, so this is a bug), never a 429 the client should wait out.
    if (err.code === Status.RESOURCE_EXHAUSTED) {
      return { status: 502, headers: {}, unexpected: true, body: { error: { code: 'bad_gateway', message: 'An answer between services exceeded its size limit' } } };
    }
    const m = httpForGrpc(err.code);
    const details = parseDetails(err.metadata?.get(DETAILS_METADATA_KEY)[0]);
    const headers: Record<string, string> = m.http === 503 ? { 'Retry-After': '5' } : {};
    const message =
      err.code === Status.UNAVAILABLE
        ? 'A backend service is unavailable, try again shortly'
        : err.code === Status.DEADLINE_EXCEEDED
          ? 'A backend service did not answer in time'
          : err.details || m.code;
    return {
      status: m.http,
      headers,
      unexpected: m.http >= 500 && err.code !== Status.UNAVAILABLE && err.code !== Status.DEADLINE_EXCEEDED && err.code !== Status.UNIMPLEMENTED,
      body: { error: { code: m.code, message, ...(details !== undefined ? { details } : {}) } },
    };
  }
  return { status: 500, headers: {}, unexpected: true, body: { error: { code: 'internal_error', message: 'Internal error' } } };
}
