import { SignJWT } from 'jose';
import { createSecretKey } from 'node:crypto';
import { bearerToken, createTokenVerifier, mintToken, parseTtl } from './tokens';

const cfg = {
  PTW_JWT_SECRET: 'unit-test-secret-0123456789',
  PTW_JWT_ALG: 'HS256' as const,
  PTW_JWT_ISSUER: 'ptw-test',
  PTW_JWT_AUDIENCE: 'ptw-api',
};
const verify = createTokenVerifier(cfg);
const mint = (o: Partial<{ ttlSeconds: number; role: 'worker' }> = {}) => mintToken(cfg, { user: 'u1', role: o.role ?? 'worker', projects: ['p1'], ttlSeconds: o.ttlSeconds ?? 60 });

function b64url(o: object): string {
  return Buffer.from(JSON.stringify(o)).toString('base64url');
}

describe('token verification', () => {
  it('when the token is valid, then the principal carries sub, role and projects', async () => {
    await expect(verify(await mint())).resolves.toEqual({ user_id: 'u1', role: 'worker', project_ids: ['p1'] });
  });

  it('when a token was verified, then it is known without waiting until it expires, and not before', async () => {
    const v = createTokenVerifier(cfg);
    const token = await mint({ ttlSeconds: 60 });
    expect(v.cached(token)).toBeUndefined();
    const principal = await v(token);
    expect(v.cached(token)).toEqual(principal);
    const now = Date.now();
    const clock = jest.spyOn(Date, 'now').mockReturnValue(now + 61_000);
    try {
      expect(v.cached(token)).toBeUndefined();
    } finally {
      clock.mockRestore();
    }
    expect(v.cached(`${token}x`)).toBeUndefined();
  });

  it('when the token has expired, then it is refused as expired', async () => {
    await expect(verify(await mint({ ttlSeconds: -120 }))).rejects.toMatchObject({ code: 16, message: 'Token has expired' });
  });

  it('when the token says alg none, then it is refused', async () => {
    const now = Math.floor(Date.now() / 1000);
    const none = `${b64url({ alg: 'none', typ: 'JWT' })}.${b64url({ sub: 'u1', role: 'manager', project_ids: ['p1'], iss: 'ptw-test', aud: 'ptw-api', exp: now + 60 })}.`;
    await expect(verify(none)).rejects.toMatchObject({ code: 16 });
  });

  it('when the audience is wrong, then it is refused', async () => {
    const t = await mintToken({ ...cfg, PTW_JWT_AUDIENCE: 'other' }, { user: 'u1', role: 'worker', projects: [], ttlSeconds: 60 });
    await expect(verify(t)).rejects.toMatchObject({ code: 16 });
  });

  it('when the token is signed with another key, then it is refused', async () => {
    const t = await mintToken({ ...cfg, PTW_JWT_SECRET: 'another-secret-0123456789' }, { user: 'u1', role: 'worker', projects: [], ttlSeconds: 60 });
    await expect(verify(t)).rejects.toMatchObject({ code: 16, message: 'Token is invalid' });
  });

  it('when the role claim is unknown, then it is refused', async () => {
    const t = await new SignJWT({ role: 'admin', project_ids: [] })
      .setProtectedHeader({ alg: 'HS256' })
      .setSubject('u1')
      .setIssuer(cfg.PTW_JWT_ISSUER)
      .setAudience(cfg.PTW_JWT_AUDIENCE)
      .setExpirationTime('1m')
      .sign(createSecretKey(Buffer.from(cfg.PTW_JWT_SECRET)));
    await expect(verify(t)).rejects.toMatchObject({ code: 16, message: 'Token claims are invalid' });
  });

  it('when the token is truncated, then it is refused', async () => {
    const t = await mint();
    await expect(verify(t.slice(0, t.length - 10))).rejects.toMatchObject({ code: 16 });
  });
});

describe('helpers', () => {
  it('when a ttl is parsed, then units convert to seconds and garbage is refused', () => {
    expect([parseTtl('30s'), parseTtl('15m'), parseTtl('1h'), parseTtl('2d')]).toEqual([30, 900, 3600, 172800]);
    expect(() => parseTtl('1 week')).toThrow(/invalid ttl/);
  });

  it('when the Authorization header is not a bearer JWT, then no token is extracted', () => {
    expect(bearerToken('Bearer a.b.c')).toBe('a.b.c');
    expect(bearerToken('Basic dXNlcjpwYXNz')).toBeUndefined();
    expect(bearerToken(undefined)).toBeUndefined();
  });

  it('when the scheme varies in case or is followed by several blanks, then the token is still extracted; without a blank or a dot it is not', () => {
    expect(bearerToken('bearer   a.b.c ')).toBe('a.b.c');
    expect(bearerToken('BEARER\ta.b')).toBe('a.b');
    expect(bearerToken('Bearera.b.c')).toBeUndefined();
    expect(bearerToken('Bearer abc')).toBeUndefined();
    expect(bearerToken('Bearer .abc')).toBeUndefined();
    expect(bearerToken('Bearer a.b c')).toBeUndefined();
    expect(bearerToken('Bearer ')).toBeUndefined();
  });

  it('when a crafted 16 KiB header would make a backtracking parse quadratic, then it is parsed in well under 20 ms', () => {
    const crafted = [
      `Bearer a.${'a'.repeat(16 * 1024)}!`,
      `Bearer ${'a'.repeat(16 * 1024)}!`,
      `Bearer ${'a.'.repeat(8 * 1024)}!`,
      `Bearer ${' '.repeat(16 * 1024)}a!`,
      `Bearer a.${'='.repeat(16 * 1024)}.!`,
    ];
    for (const header of crafted) {
      const start = process.cpuUsage();
      expect(bearerToken(header)).toBeUndefined();
      const { user, system } = process.cpuUsage(start);
      // The regex this replaced took 460 ms for the first one on this machine.
      expect((user + system) / 1000).toBeLessThan(20);
    }
  });
});
