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

/** Returns the claims of a valid, unexpired session token; null otherwise (a routes token included). */
export function verifyMachineToken(token: string, secret: string): MachineClaims | null {
  const claims = verifiedPayload(token, secret);
  return claims && typeof claims.sessionId === 'string' && typeof claims.projectId === 'string' && claims.scope === undefined ? (claims as unknown as MachineClaims) : null;
}

/**
 * A token that opens only the route lookup (`/v1/routes/:routeId`): what a
 * machine on Fly.io needs to answer a misrouted request with `fly-replay`, from
 * its first second and while it waits in the warm pool, before any session's
 * token is its. It names the machine's own route id; it reads no project.
 */
export interface RoutesClaims {
  scope: 'routes';
  /** The route id of the machine it was issued to (for the logs: any route may be asked). */
  routeId: string;
  exp: number;
}

export function createRoutesToken(routeId: string, secret: string, ttlSeconds: number): string {
  const payload = b64(JSON.stringify({ scope: 'routes', routeId, exp: Math.floor(Date.now() / 1000) + ttlSeconds }));
  return `${payload}.${sign(payload, secret)}`;
}

/** The claims of a valid, unexpired routes token; null otherwise (a session token included). */
export function verifyRoutesToken(token: string, secret: string): RoutesClaims | null {
  const claims = verifiedPayload(token, secret);
  return claims && claims.scope === 'routes' && typeof claims.routeId === 'string' ? (claims as unknown as RoutesClaims) : null;
}

/** The payload of a token signed with `secret` and not expired; null otherwise. */
function verifiedPayload(token: string, secret: string): Record<string, unknown> | null {
  const [payload, signature, extra] = token.split('.');
  if (!payload || !signature || extra !== undefined) return null;
  const expected = Buffer.from(sign(payload, secret));
  const given = Buffer.from(signature);
  if (expected.length !== given.length || !timingSafeEqual(expected, given)) return null;
  try {
    const claims = JSON.parse(Buffer.from(payload, 'base64url').toString()) as Record<string, unknown>;
    return claims && typeof claims.exp === 'number' && claims.exp > Date.now() / 1000 ? claims : null;
  } catch {
    return null;
  }
}
