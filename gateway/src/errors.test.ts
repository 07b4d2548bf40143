import { Metadata } from '@grpc/grpc-js';
import { Status } from '@ptw/common';
import { toHttpError } from './errors';

const grpcError = (code: number, details: string) => Object.assign(new Error(details), { code, details, metadata: new Metadata() });

it('when the hop answers RESOURCE_EXHAUSTED (a message past its size limit), then 502, never a 429 without Retry-After', () => {
  const r = toHttpError(grpcError(Status.RESOURCE_EXHAUSTED, 'Received message larger than max (9000000 vs. 8388608)'));
  expect({ status: r.status, code: r.body.error.code, retryAfter: r.headers['Retry-After'] }).toEqual({ status: 502, code: 'bad_gateway', retryAfter: undefined });
  expect(r.body.error.message).not.toMatch(/8388608|larger than max/);
});

it('when the hop answers ABORTED with details, then 409 with them', () => {
  const e = grpcError(Status.ABORTED, 'Stale version 1');
  e.metadata.set('ptw-error-details-bin', Buffer.from(JSON.stringify({ server_version: 2 })));
  const r = toHttpError(e);
  expect({ status: r.status, details: r.body.error.details }).toEqual({ status: 409, details: { server_version: 2 } });
});
