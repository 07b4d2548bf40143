import { createPublicKey, createSecretKey, type KeyObject } from 'node:crypto';
import { jwtVerify, SignJWT, errors as joseErrors } from 'jose';
import { z } from 'zod';
import { AppError, unauthenticated } from '../errors';
import { ROLES, type Principal } from './principal';

export interface AuthConfig {
  PTW_JWT_SECRET?: string;
  PTW_JWT_PUBLIC_KEY?: string;
  PTW_JWT_ALG: 'HS256' | 'RS256' | 'ES256';
  PTW_JWT_ISSUER: string;
  PTW_JWT_AUDIENCE: string;
}

const claimsSchema = z.object({
  sub: z.string().min(1).max(128),
  role: z.enum(ROLES),
  project_ids: z.array(z.string().min(1).max(128)).max(1000),
});

export interface TokenVerifier {
  (token: string): Promise<Principal>;
  /** The principal of a token verified before and not yet expired, without waiting; else undefined. */
  cached(token: string): Principal | undefined;
}

function verificationKey(cfg: AuthConfig): KeyObject {
  if (cfg.PTW_JWT_ALG === 'HS256') return createSecretKey(Buffer.from(cfg.PTW_JWT_SECRET ?? '', 'utf8'));
  return createPublicKey(cfg.PTW_JWT_PUBLIC_KEY ?? '');
}

/**
 * Builds the verifier every process uses: one algorithm only (so `alg: none` and algorithm
 * confusion are refused), issuer, audience and `exp` required. Any failure is UNAUTHENTICATED
 * with a generic message.
 */
export function createTokenVerifier(cfg: AuthConfig, opts: { cacheSize?: number } = {}): TokenVerifier {
  const key = verificationKey(cfg);
  // A client sends the same token for its whole life: remember verified ones until they expire
  // (bounded, oldest first out), so the signature is checked once per token, not once per request.
  const cacheSize = opts.cacheSize ?? 5000;
  const cache = new Map<string, { principal: Principal; until: number }>();
  const cached = (token: string): Principal | undefined => {
    const hit = cache.get(token);
    if (!hit) return undefined;
    if (hit.until > Date.now()) return hit.principal;
    cache.delete(token);
    return undefined;
  };
  const verify = async (token: string): Promise<Principal> => {
    const hit = cached(token);
    if (hit) return hit;
    const { principal, exp } = await verifyOnce(token);
    if (cacheSize > 0) {
      if (cache.size >= cacheSize) cache.delete(cache.keys().next().value as string);
      cache.set(token, { principal, until: exp * 1000 });
    }
    return principal;
  };
  const verifyOnce = async (token: string): Promise<{ principal: Principal; exp: number }> => {
    try {
      const { payload } = await jwtVerify(token, key, {
        algorithms: [cfg.PTW_JWT_ALG],
        issuer: cfg.PTW_JWT_ISSUER,
        audience: cfg.PTW_JWT_AUDIENCE,
        requiredClaims: ['exp', 'sub'],
        clockTolerance: 5,
      });
      // A token issued in the future (beyond clock skew) was minted by a wrong clock or forged.
      if (typeof payload.iat === 'number' && payload.iat > Date.now() / 1000 + 60) throw unauthenticated('Token is invalid');
      const claims = claimsSchema.parse(payload);
      return { principal: { user_id: claims.sub, role: claims.role, project_ids: claims.project_ids }, exp: payload.exp as number };
    } catch (err) {
      if (err instanceof AppError) throw err;
      if (err instanceof z.ZodError) throw unauthenticated('Token claims are invalid');
      if (err instanceof joseErrors.JWTExpired) throw unauthenticated('Token has expired');
      throw unauthenticated('Token is invalid');
    }
  };
  return Object.assign(verify, { cached });
}

export interface MintOptions {
  user: string;
  role: Principal['role'];
  projects: string[];
  /** Lifetime in seconds. */
  ttlSeconds: number;
}

/** Mints an HS256 development token (and the services' own token when no other is configured). */
export async function mintToken(cfg: Pick<AuthConfig, 'PTW_JWT_SECRET' | 'PTW_JWT_ISSUER' | 'PTW_JWT_AUDIENCE'>, o: MintOptions): Promise<string> {
  if (!cfg.PTW_JWT_SECRET) throw new Error('PTW_JWT_SECRET is required to mint tokens');
  return new SignJWT({ role: o.role, project_ids: o.projects })
    .setProtectedHeader({ alg: 'HS256', typ: 'JWT' })
    .setSubject(o.user)
    .setIssuer(cfg.PTW_JWT_ISSUER)
    .setAudience(cfg.PTW_JWT_AUDIENCE)
    .setIssuedAt()
    .setExpirationTime(Math.floor(Date.now() / 1000) + o.ttlSeconds)
    .sign(createSecretKey(Buffer.from(cfg.PTW_JWT_SECRET, 'utf8')));
}

/** Parses `30s`, `15m`, `1h`, `7d` into seconds. */
export function parseTtl(ttl: string): number {
  const m = /^(\d+)([smhd])$/.exec(ttl.trim());
  if (!m) throw new Error(`invalid ttl "${ttl}" (expected e.g. 30s, 15m, 1h, 7d)`);
  return Number(m[1]) * { s: 1, m: 60, h: 3600, d: 86400 }[m[2] as 's' | 'm' | 'h' | 'd'];
}

/** The characters of a compact JWS/JWE (base64url segments joined by dots; `+/` of plain base64 tolerated). */
const TOKEN_CHARS = /^[A-Za-z0-9._=+/-]+$/;

/**
 * Extracts the token from an `Authorization: Bearer <token>` value, in time linear in its length:
 * any client sends this header before it is authenticated, so a parse that backtracks (as the
 * earlier one-regex version did: 0.46 s for `Bearer a.` + 16 KiB of `a` + `!`) would let one
 * request hold the event loop.
 */
export function bearerToken(header: string | undefined): string | undefined {
  if (!header) return undefined;
  const value = header.trim();
  if (value.slice(0, 6).toLowerCase() !== 'bearer') return undefined;
  const token = value.slice(6).trimStart();
  // At least one blank between the scheme and the token (`Bearerx.y` is another scheme).
  if (token.length === value.length - 6) return undefined;
  return token.indexOf('.') > 0 && TOKEN_CHARS.test(token) ? token : undefined;
}
