import { AppError, GRPC_TO_HTTP, httpForGrpc, Status } from './errors';

describe('gRPC → HTTP mapping', () => {
  it.each([
    [Status.INVALID_ARGUMENT, 400],
    [Status.UNAUTHENTICATED, 401],
    [Status.PERMISSION_DENIED, 403],
    [Status.NOT_FOUND, 404],
    [Status.ALREADY_EXISTS, 409],
    [Status.ABORTED, 409],
    [Status.FAILED_PRECONDITION, 400],
    [Status.RESOURCE_EXHAUSTED, 429],
    [Status.UNAVAILABLE, 503],
    [Status.DEADLINE_EXCEEDED, 504],
    [Status.INTERNAL, 500],
  ])('when the service answers code %i, then the gateway answers HTTP %i', (code, http) => {
    expect(httpForGrpc(code).http).toBe(http);
  });

  it('when a code is not in the table, then it is a 500', () => {
    expect(httpForGrpc(999)).toEqual({ http: 500, code: 'internal_error' });
  });

  it('when every gRPC status is looked up, then each has an entry', () => {
    for (let code = 0; code <= 16; code++) expect(GRPC_TO_HTTP[code]).toBeDefined();
  });

  it('when an AppError is built, then it keeps its code, message and details', () => {
    const e = new AppError(Status.NOT_FOUND, 'Permit not found', { id: 'x' });
    expect([e.code, e.message, e.details]).toEqual([Status.NOT_FOUND, 'Permit not found', { id: 'x' }]);
  });
});
