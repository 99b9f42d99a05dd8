import { createHmac, timingSafeEqual } from 'node:crypto';

/**
 * Short-lived tokens that let one preview machine read its own session's files
 * and nothing else; the machine never holds database credentials.
 */
export interface MachineClaims {
  sessionId: string;
  projectId: string;
  /** Expiry, epoch seconds. */
  exp: number;
}

const b64 = (s: string | Buffer) => Buffer.from(s).toString('base64url');
const sign = (payload: string, secret: string) => createHmac('sha256', secret).update(payload).digest('base64url');

export function createMachineToken(claims: Omit<MachineClaims, 'exp'>, secret: string, ttlSeconds: number): string {
  const payload = b64(JSON.stringify({ ...claims, exp: Math.floor(Date.now() / 1000) + ttlSeconds }));
  return `${payload}.${sign(payload, secret)}`;
}

/** Returns the claims of a valid, unexpired token; null otherwise. */
export function verifyMachineToken(token: string, secret: string): MachineClaims | null {
  const [payload, signature, extra] = token.split('.');
  if (!payload || !signature || extra !== undefined) return null;
  const expected = Buffer.from(sign(payload, secret));
  const given = Buffer.from(signature);
  if (expected.length !== given.length || !timingSafeEqual(expected, given)) return null;
  try {
    const claims = JSON.parse(Buffer.from(payload, 'base64url').toString()) as MachineClaims;
    return typeof claims.exp === 'number' && claims.exp > Date.now() / 1000 ? claims : null;
  } catch {
    return null;
  }
}
