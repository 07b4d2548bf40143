/**
 * What the hop benches (gateway.js, grpc-hop.js) call when they measure the called side away: a gRPC
 * "server" that does nothing but answer — Node's http2 server returning one pre-encoded, empty
 * SyncOfflineDataResponse with `grpc-status: 0` to every call — and the gRPC framing (the kit's).
 */
const http2 = require('node:http2');
const path = require('node:path');

const root = path.resolve(__dirname, '..', '..');

/** A message in gRPC's length-prefixed framing (uncompressed): the kit's own. */
const { grpcFrame } = require(path.join(root, 'libs/common/dist/grpc/http2-unary.js'));

/** Listens on a free loopback port; resolves with it. */
async function startCannedSync() {
  const { syncPb } = require(path.join(root, 'libs/proto/dist'));
  const message = grpcFrame(syncPb.SyncOfflineDataResponse.encode({ applied: [], conflicts: [], rejected: [], summary: { total: 0, applied: 0, conflicts: 0, rejected: 0 } }).finish());
  const server = http2.createServer();
  server.on('stream', (stream) => {
    stream.on('data', () => undefined);
    stream.on('end', () => {
      stream.respond({ ':status': 200, 'content-type': 'application/grpc' }, { waitForTrailers: true });
      stream.once('wantTrailers', () => stream.sendTrailers({ 'grpc-status': '0' }));
      stream.end(message);
    });
  });
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  return server.address().port;
}

module.exports = { grpcFrame, startCannedSync };
