import { baseConfigSchema, ConfigError, loadConfig } from './config';

const secret = { PTW_JWT_SECRET: 'a-secret-of-enough-length' };

describe('loadConfig', () => {
  it('when only the secret is given, then every default applies', () => {
    const c = loadConfig(baseConfigSchema, secret);
    expect(c.PTW_SYNC_ADDR).toBe('127.0.0.1:50051');
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

  it('when a variable is empty, then its default applies instead of failing', () => {
    expect(loadConfig(baseConfigSchema, { ...secret, LOG_LEVEL: '' }).LOG_LEVEL).toBe('info');
  });
});
