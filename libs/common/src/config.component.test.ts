import net from 'node:net';
import { DEV_JWT_SECRET } from './auth/dev';
import { baseConfigSchema, ConfigError, listenError, loadConfig } from './config';

const secret = { PTW_JWT_SECRET: 'a-secret-of-enough-length' };

describe('loadConfig', () => {
  it('when only the secret is given, then every default applies', () => {
    const c = loadConfig(baseConfigSchema, secret);
    expect(c.PTW_SYNC_ADDR).toBe('127.0.0.1:15051');
    expect(c.PTW_GRPC_DEADLINE_MS).toBe(10_000);
    expect(c.PTW_JWT_ALG).toBe('HS256');
  });

  it('when HS256 has no secret, then it fails naming PTW_JWT_SECRET', () => {
    expect(() => loadConfig(baseConfigSchema, {})).toThrow(/PTW_JWT_SECRET/);
  });

  it('when RS256 has no public key, then it fails naming PTW_JWT_PUBLIC_KEY', () => {
    expect(() => loadConfig(baseConfigSchema, { PTW_JWT_ALG: 'RS256' })).toThrow(/PTW_JWT_PUBLIC_KEY/);
  });

  it('when several values are wrong, then every one is reported by name at once', () => {
    try {
      loadConfig(baseConfigSchema, { ...secret, MONGO_URL: 'http://x', PTW_SYNC_ADDR: 'nohost', PTW_GRPC_DEADLINE_MS: 'soon' });
      throw new Error('expected a ConfigError');
    } catch (err) {
      expect(err).toBeInstanceOf(ConfigError);
      const problems = (err as ConfigError).problems.join('\n');
      expect(problems).toMatch(/MONGO_URL/);
      expect(problems).toMatch(/PTW_SYNC_ADDR/);
      expect(problems).toMatch(/PTW_GRPC_DEADLINE_MS/);
    }
  });

  it('when LOG_MAX_BYTES and LOG_MAX_FILES are unset, given in bytes or with K/M/G, then they are bytes (0: never rotate) and a count; anything else stops start-up naming them', () => {
    expect(loadConfig(baseConfigSchema, secret)).toMatchObject({ LOG_MAX_BYTES: 50 * 1024 * 1024, LOG_MAX_FILES: 5 });
    expect(loadConfig(baseConfigSchema, { ...secret, LOG_MAX_BYTES: '16K', LOG_MAX_FILES: '3' })).toMatchObject({ LOG_MAX_BYTES: 16384, LOG_MAX_FILES: 3 });
    expect(loadConfig(baseConfigSchema, { ...secret, LOG_MAX_BYTES: '200000' }).LOG_MAX_BYTES).toBe(200000);
    expect(loadConfig(baseConfigSchema, { ...secret, LOG_MAX_BYTES: '1G' }).LOG_MAX_BYTES).toBe(1024 ** 3);
    expect(loadConfig(baseConfigSchema, { ...secret, LOG_MAX_BYTES: '0' }).LOG_MAX_BYTES).toBe(0);
    for (const [key, value] of [
      ['LOG_MAX_BYTES', '5MB'],
      ['LOG_MAX_BYTES', '-1'],
      ['LOG_MAX_BYTES', '100'],
      ['LOG_MAX_BYTES', '1.5M'],
      ['LOG_MAX_FILES', '0'],
      ['LOG_MAX_FILES', '2.5'],
      ['LOG_MAX_FILES', 'many'],
    ]) {
      expect(() => loadConfig(baseConfigSchema, { ...secret, [key]: value })).toThrow(new RegExp(`${key}: `));
    }
  });

  it('when a variable is empty, then its default applies instead of failing', () => {
    expect(loadConfig(baseConfigSchema, { ...secret, LOG_LEVEL: '' }).LOG_LEVEL).toBe('info');
  });
});

describe('the published development secret', () => {
  it('when NODE_ENV=production and PTW_JWT_SECRET is the development secret, then start-up fails with one line naming PTW_JWT_SECRET', () => {
    try {
      loadConfig(baseConfigSchema, { NODE_ENV: 'production', PTW_JWT_SECRET: DEV_JWT_SECRET });
      throw new Error('expected a ConfigError');
    } catch (err) {
      expect(err).toBeInstanceOf(ConfigError);
      expect((err as ConfigError).problems).toEqual([expect.stringMatching(/^PTW_JWT_SECRET: .*development secret/)]);
    }
  });

  it('when NODE_ENV=production and the algorithm is RS256, then the development secret is still refused', () => {
    expect(() => loadConfig(baseConfigSchema, { NODE_ENV: 'production', PTW_JWT_ALG: 'RS256', PTW_JWT_PUBLIC_KEY: 'pem', PTW_JWT_SECRET: DEV_JWT_SECRET })).toThrow(/PTW_JWT_SECRET/);
  });

  it("when a process's schema does not read the secret at all (the job worker), then the development secret in its environment is refused in production too", () => {
    const workerLike = baseConfigSchema.pick({ NODE_ENV: true, MONGO_URL: true });
    expect(() => loadConfig(workerLike, { NODE_ENV: 'production', PTW_JWT_SECRET: DEV_JWT_SECRET })).toThrow(/PTW_JWT_SECRET: is the published development secret/);
  });

  it('when not in production, or production with a secret of its own, then start-up goes on', () => {
    expect(loadConfig(baseConfigSchema, { PTW_JWT_SECRET: DEV_JWT_SECRET }).PTW_JWT_SECRET).toBe(DEV_JWT_SECRET);
    expect(loadConfig(baseConfigSchema, { NODE_ENV: 'test', PTW_JWT_SECRET: DEV_JWT_SECRET }).NODE_ENV).toBe('test');
    expect(loadConfig(baseConfigSchema, { NODE_ENV: 'production', ...secret }).NODE_ENV).toBe('production');
  });
});

describe('default ports', () => {
  it("when nothing is set, then every listening port lies below Linux's ephemeral range (32768–60999)", () => {
    const c = loadConfig(baseConfigSchema, secret);
    for (const addr of [c.PTW_SYNC_ADDR, c.PTW_WORKFLOW_ADDR, c.PTW_EXPORT_ADDR, c.PTW_HEALTH_ADDR]) {
      expect(Number(addr.split(':')[1])).toBeLessThan(32768);
    }
  });
});

describe('listenError', () => {
  it('when the port is taken, then the error is one line naming the variable to change', async () => {
    const holder = net.createServer();
    await new Promise<void>((resolve) => holder.listen(0, '127.0.0.1', resolve));
    const port = (holder.address() as net.AddressInfo).port;
    const second = net.createServer();
    const err = await new Promise<Error>((resolve) => {
      second.once('error', resolve);
      second.listen(port, '127.0.0.1');
    });
    holder.close();
    const e = listenError(err, `127.0.0.1:${port}`, 'PTW_SYNC_ADDR/PTW_GRPC_LISTEN');
    expect(e.message).toBe(`127.0.0.1:${port} is in use: set PTW_SYNC_ADDR/PTW_GRPC_LISTEN to another port`);
  });

  it('when listening failed for another reason, then that error is kept', () => {
    const original = Object.assign(new Error('listen EACCES: permission denied 0.0.0.0:80'), { code: 'EACCES' });
    expect(listenError(original, '0.0.0.0:80', 'GATEWAY_PORT')).toBe(original);
  });
});
