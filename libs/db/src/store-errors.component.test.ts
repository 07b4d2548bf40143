/**
 * What the services answer when the store fails: the driver's and mongoose's own error objects for
 * "the store cannot be reached" become UNAVAILABLE (HTTP 503 with Retry-After at the gateway), any
 * other store error stays INTERNAL. The classes are the installed driver's, not look-alikes.
 */
import { status as Status } from '@grpc/grpc-js';
import net from 'node:net';
import mongoose from 'mongoose';
import { MongoNetworkError, MongoServerError, MongoServerClosedError } from 'mongodb';
import { createLogger, isStoreUnavailable, memorySink, toServiceError } from '@ptw/common';

// Not exported by the driver's entry point; thrown when a pool is cleared under waiting operations.
// eslint-disable-next-line @typescript-eslint/no-require-imports -- the driver's internal error classes are not exported: the test builds the errors the pool throws
const { PoolClearedOnNetworkError, WaitQueueTimeoutError } = require('mongodb/lib/cmap/errors') as {
  PoolClearedOnNetworkError: new (pool: { address: string }) => Error;
  WaitQueueTimeoutError: new (message: string, address: string) => Error;
};

const sink = memorySink();
const log = createLogger('store-errors', { stdout: false, sink: sink.sink });

it.each([
  ['a lost connection', new MongoNetworkError('connection 3 to 127.0.0.1:27017 closed')],
  ['an operation waiting while the pool was cleared (the store died under load)', new PoolClearedOnNetworkError({ address: '127.0.0.1:27017' })],
  ['no connection free in time', new WaitQueueTimeoutError('Timed out while checking out a connection from connection pool', '127.0.0.1:27017')],
  ['a server closed under the operation', new MongoServerClosedError()],
  ["mongoose's queue giving up while disconnected", new mongoose.Error('Operation `permits.findOne()` buffering timed out after 10000ms')],
  ['a network error given as the cause of another', Object.assign(new Error('write failed'), { cause: new MongoNetworkError('read ECONNRESET') })],
])('when the store fails with %s, then the call answers UNAVAILABLE', (_what, err) => {
  expect(isStoreUnavailable(err)).toBe(true);
  const mapped = toServiceError(err, log);
  expect([mapped.code, mapped.details]).toEqual([Status.UNAVAILABLE, 'Store unavailable, retry shortly']);
});

it('when the driver writes a command to a connection the store has closed (EPIPE, not wrapped by the driver), then the call answers UNAVAILABLE', async () => {
  // Node's own error, made the way the store's restart makes it: the peer ends the connection, then a write.
  const server = net.createServer((s) => s.end());
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const socket = net.connect((server.address() as net.AddressInfo).port, '127.0.0.1');
  await new Promise((r) => socket.once('end', r));
  const err = await new Promise<Error>((resolve) => {
    socket.once('error', resolve);
    socket.write('command', (e) => e && resolve(e));
  });
  socket.destroy();
  server.close();
  expect((err as NodeJS.ErrnoException).code).toBe('EPIPE');
  expect(isStoreUnavailable(err)).toBe(true);
  expect(toServiceError(err, log).code).toBe(Status.UNAVAILABLE);
});

it.each([
  ['a server error', new MongoServerError({ message: 'E11000 duplicate key error', code: 11000 })],
  ['another mongoose error', new mongoose.Error('Cast to ObjectId failed')],
  ['a plain error', new Error('boom')],
])('when a call fails with %s, then it answers INTERNAL and logs it', (_what, err) => {
  sink.clear();
  expect(isStoreUnavailable(err)).toBe(false);
  expect(toServiceError(err, log).code).toBe(Status.INTERNAL);
  expect(sink.lines()).toEqual([expect.objectContaining({ level: 50, outcome: 'internal_error' })]);
});
