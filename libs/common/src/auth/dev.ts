/**
 * The HS256 secret used on a developer machine and in tests when PTW_JWT_SECRET is not set. It is
 * public by definition: production supplies its own PTW_JWT_SECRET (docker-compose.yml requires one) or, better, PTW_JWT_ALG=RS256/ES256 with a public key.
 */
export const DEV_JWT_SECRET = 'ptw-development-secret-not-for-production';
