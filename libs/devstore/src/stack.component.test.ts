import http from 'node:http';
import type net from 'node:net';
import { answersAsGateway, distinctPort } from './stack';

describe('distinctPort', () => {
  it('when the probe hands out a port twice, then the second time another one is taken', async () => {
    const handedOut = [40001, 40001, 40002, 40001, 40002, 40003];
    const pick = async () => handedOut.shift()!;
    const taken = new Set<number>();
    const ports = [await distinctPort(taken, pick), await distinctPort(taken, pick), await distinctPort(taken, pick)];
    expect(ports).toEqual([40001, 40002, 40003]);
    expect([...taken]).toEqual([40001, 40002, 40003]);
  });

  it('when the probe never hands out a new port, then it fails instead of reusing one', async () => {
    await expect(distinctPort(new Set([40001]), async () => 40001)).rejects.toThrow(/no distinct free port/);
  });
});

describe('answersAsGateway', () => {
  const servers: http.Server[] = [];
  const serve = async (handler: http.RequestListener) => {
    const server = http.createServer(handler);
    servers.push(server);
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
    return `http://127.0.0.1:${(server.address() as net.AddressInfo).port}`;
  };
  afterAll(() => Promise.all(servers.map((s) => new Promise((r) => s.close(r)))));

  it("when /healthz answers as the gateway's does, then true", async () => {
    const url = await serve((_req, res) => {
      res.writeHead(200, { 'content-type': 'application/json', 'x-request-id': 'r1' });
      res.end('{"status":"ok"}');
    });
    expect(await answersAsGateway(url)).toBe(true);
  });

  it('when another HTTP server holds the port (a metrics server: 404, no request id), then false', async () => {
    const url = await serve((_req, res) => {
      res.writeHead(404);
      res.end('Not found');
    });
    expect(await answersAsGateway(url)).toBe(false);
  });

  it('when the answer is 200 but without a request id, then false', async () => {
    const url = await serve((_req, res) => {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end('{"status":"ok"}');
    });
    expect(await answersAsGateway(url)).toBe(false);
  });
});
