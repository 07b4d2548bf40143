import { status as Status } from '@grpc/grpc-js';

export { Status };

/**
 * An error the domain throws on purpose: it carries the gRPC status it maps to, a message safe to
 * show the caller and optional structured details (e.g. the offending field, the server's state).
 */
export class AppError extends Error {
  constructor(
    public readonly code: Status,
    message: string,
    public readonly details?: unknown,
  ) {
    super(message);
    this.name = 'AppError';
  }
}

export const invalidArgument = (message: string, details?: unknown) => new AppError(Status.INVALID_ARGUMENT, message, details);
export const notFound = (message = 'Not found') => new AppError(Status.NOT_FOUND, message);
export const permissionDenied = (message = 'You do not have permission to perform this action') => new AppError(Status.PERMISSION_DENIED, message);
export const unauthenticated = (message = 'Authentication credentials were not provided or are invalid') => new AppError(Status.UNAUTHENTICATED, message);
export const conflict = (message: string, details?: unknown) => new AppError(Status.ABORTED, message, details);
export const failedPrecondition = (message: string, details?: unknown) => new AppError(Status.FAILED_PRECONDITION, message, details);
export const unimplemented = (what: string) => new AppError(Status.UNIMPLEMENTED, `${what} is not implemented yet`);

/** gRPC trailer key that carries AppError details as UTF-8 JSON (binary key: values may be any text). */
export const DETAILS_METADATA_KEY = 'ptw-error-details-bin';

/** HTTP status and error code the gateway answers for each gRPC status (ENGINEERING habit 3). */
export const GRPC_TO_HTTP: Readonly<Record<number, { http: number; code: string }>> = {
  [Status.OK]: { http: 200, code: 'ok' },
  [Status.CANCELLED]: { http: 499, code: 'cancelled' },
  [Status.UNKNOWN]: { http: 500, code: 'internal_error' },
  [Status.INVALID_ARGUMENT]: { http: 400, code: 'invalid_argument' },
  [Status.DEADLINE_EXCEEDED]: { http: 504, code: 'deadline_exceeded' },
  [Status.NOT_FOUND]: { http: 404, code: 'not_found' },
  [Status.ALREADY_EXISTS]: { http: 409, code: 'already_exists' },
  [Status.PERMISSION_DENIED]: { http: 403, code: 'permission_denied' },
  [Status.RESOURCE_EXHAUSTED]: { http: 429, code: 'throttled' },
  [Status.FAILED_PRECONDITION]: { http: 400, code: 'failed_precondition' },
  [Status.ABORTED]: { http: 409, code: 'conflict' },
  [Status.OUT_OF_RANGE]: { http: 400, code: 'out_of_range' },
  [Status.UNIMPLEMENTED]: { http: 501, code: 'not_implemented' },
  [Status.INTERNAL]: { http: 500, code: 'internal_error' },
  [Status.UNAVAILABLE]: { http: 503, code: 'service_unavailable' },
  [Status.DATA_LOSS]: { http: 500, code: 'internal_error' },
  [Status.UNAUTHENTICATED]: { http: 401, code: 'unauthenticated' },
};

/** Maps a gRPC status code to the gateway's HTTP status and error code; unknown codes are 500. */
export function httpForGrpc(code: number): { http: number; code: string } {
  return GRPC_TO_HTTP[code] ?? { http: 500, code: 'internal_error' };
}
