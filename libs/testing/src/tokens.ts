import { randomUUID } from 'node:crypto';
import { SignJWT, type JWTPayload } from 'jose';

/** A JWT secret for tests (Supabase's are at least 32 characters). */
export const TEST_JWT_SECRET = 'test-only-supabase-jwt-secret-0123456789abcdef';

export interface TestUser {
  id: string;
  token: string;
  /** `authorization` header with the user's token. */
  auth: { authorization: string };
}

/**
 * An access token as Supabase Auth issues it (HS256, aud `authenticated`, role
 * `authenticated`, `app_metadata.tier` when given), signed with `secret`.
 * `claims` overrides or (with undefined) removes claims; `alg` signs with another HMAC.
 */
export async function signToken(
  secret: string,
  options: { sub?: string; tier?: 'free' | 'pro'; expiresInSeconds?: number; claims?: Record<string, unknown>; alg?: string } = {},
): Promise<string> {
  const now = Math.floor(Date.now() / 1000);
  const payload: JWTPayload = {
    sub: options.sub ?? randomUUID(),
    aud: 'authenticated',
    role: 'authenticated',
    iat: now,
    exp: now + (options.expiresInSeconds ?? 3600),
    app_metadata: { provider: 'email', ...(options.tier ? { tier: options.tier } : {}) },
    ...options.claims,
  };
  for (const [key, value] of Object.entries(payload)) if (value === undefined) delete payload[key];
  return new SignJWT(payload).setProtectedHeader({ alg: options.alg ?? 'HS256', typ: 'JWT' }).sign(new TextEncoder().encode(secret));
}

/** A new user (random id) and a valid token for it. */
export async function testUser(secret: string, tier?: 'free' | 'pro'): Promise<TestUser> {
  const id = randomUUID();
  const token = await signToken(secret, { sub: id, tier });
  return { id, token, auth: { authorization: `Bearer ${token}` } };
}
