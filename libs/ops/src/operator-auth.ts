import { createHash, timingSafeEqual } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Config } from '@velocity/contracts';
import { sendJson } from '@velocity/runtime';

/**
 * The operator guard, one for every operator surface: Bull Board and
 * /metrics on the api, /metrics on the workers' operator servers.
 *
 * - No operator credentials configured: the surfaces are off, answered 404
 *   exactly like a path that does not exist (not open, not advertised).
 * - Configured: `Authorization: Basic` with OPERATOR_USER/OPERATOR_PASSWORD, or
 *   `Authorization: Bearer` with OPERATOR_TOKEN. Anything else: 401 with a
 *   `WWW-Authenticate` challenge for each scheme that is configured.
 *
 * Comparisons are constant-time (both sides hashed to 32 bytes first, so the
 * length of a secret does not leak either).
 */
export type OperatorCredentials = Pick<Config, 'OPERATOR_USER' | 'OPERATOR_PASSWORD' | 'OPERATOR_TOKEN'>;

export type OperatorDecision = 'allowed' | 'off' | 'denied';

const REALM = 'velocity-preview operators';

export function operatorSurfacesEnabled(credentials: OperatorCredentials): boolean {
  return Boolean(credentials.OPERATOR_TOKEN || (credentials.OPERATOR_USER && credentials.OPERATOR_PASSWORD));
}

function sha256(value: string): Buffer {
  return createHash('sha256').update(value, 'utf8').digest();
}

/** Constant-time equality of two strings of any length. */
export function safeEqual(given: string, expected: string): boolean {
  return timingSafeEqual(sha256(given), sha256(expected));
}

/** What the guard decides for an `Authorization` header. */
export function checkOperator(credentials: OperatorCredentials, authorization: string | undefined): OperatorDecision {
  if (!operatorSurfacesEnabled(credentials)) return 'off';
  if (!authorization) return 'denied';
  const space = authorization.indexOf(' ');
  if (space <= 0) return 'denied';
  const scheme = authorization.slice(0, space).toLowerCase();
  const value = authorization.slice(space + 1).trim();
  const { OPERATOR_USER: user, OPERATOR_PASSWORD: password, OPERATOR_TOKEN: token } = credentials;
  if (scheme === 'bearer' && token) return safeEqual(value, token) ? 'allowed' : 'denied';
  if (scheme === 'basic' && user && password) {
    const decoded = Buffer.from(value, 'base64').toString('utf8');
    const colon = decoded.indexOf(':');
    if (colon < 0) return 'denied';
    // Both halves are always compared: no early exit tells a right user from a wrong one.
    const userOk = safeEqual(decoded.slice(0, colon), user);
    const passwordOk = safeEqual(decoded.slice(colon + 1), password);
    return userOk && passwordOk ? 'allowed' : 'denied';
  }
  return 'denied';
}

/** The `WWW-Authenticate` challenges of a 401: one per configured scheme. */
export function operatorChallenges(credentials: OperatorCredentials): string[] {
  const challenges: string[] = [];
  if (credentials.OPERATOR_USER && credentials.OPERATOR_PASSWORD) challenges.push(`Basic realm="${REALM}", charset="UTF-8"`);
  if (credentials.OPERATOR_TOKEN) challenges.push(`Bearer realm="${REALM}"`);
  return challenges;
}

type Next = (err?: unknown) => void;

/**
 * The guard as a Connect/Express-style middleware; works on a plain node:http
 * server too (it uses only IncomingMessage/ServerResponse). Calls `next()` only
 * for an operator.
 */
export function operatorAuth(credentials: OperatorCredentials) {
  return function operatorGuard(req: IncomingMessage, res: ServerResponse, next: Next): void {
    const decision = checkOperator(credentials, req.headers.authorization);
    if (decision === 'allowed') return next();
    const path = (req.url ?? '/').split('?', 1)[0];
    if (decision === 'off') {
      // The same answer as any unknown route, so nothing tells an operator surface is there.
      return sendJson(res, 404, { statusCode: 404, error: 'Not Found', message: `Cannot ${req.method} ${(req as { originalUrl?: string }).originalUrl?.split('?', 1)[0] ?? path}` });
    }
    res.setHeader('WWW-Authenticate', operatorChallenges(credentials));
    sendJson(res, 401, {
      statusCode: 401,
      error: 'Unauthorized',
      message: 'Operator credentials required: HTTP Basic (OPERATOR_USER/OPERATOR_PASSWORD) or a Bearer token (OPERATOR_TOKEN)',
    });
  };
}
