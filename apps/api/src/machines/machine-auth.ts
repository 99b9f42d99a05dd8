import { ForbiddenException, UnauthorizedException } from '@nestjs/common';
import { verifyMachineToken, verifyRoutesToken, type MachineClaims, type RoutesClaims } from '@velocity/contracts';

/**
 * The claims of the machine token in `Authorization: Bearer <token>`: 401 when
 * there is none or it is not valid, 403 when `sessionId` is given and the token
 * is for another session. The signature only: MachineAccess (machine-access.ts)
 * also checks that the token's session is live, for every machine endpoint.
 */
export function machineClaims(authorization: string | undefined, secret: string, sessionId?: string): MachineClaims {
  const token = authorization?.match(/^Bearer (\S+)$/)?.[1];
  const claims = token ? verifyMachineToken(token, secret) : null;
  if (!claims) throw new UnauthorizedException({ statusCode: 401, error: 'Unauthorized', message: 'A valid machine token is required', field: 'authorization' });
  if (sessionId !== undefined && claims.sessionId !== sessionId) {
    throw new ForbiddenException({ statusCode: 403, error: 'Forbidden', message: 'authorization: the token is for another session', field: 'authorization' });
  }
  return claims;
}

/** The claims of the routes token in `Authorization: Bearer <token>` (what machines look routes up with): 401 otherwise. */
export function routesClaims(authorization: string | undefined, secret: string): RoutesClaims {
  const token = authorization?.match(/^Bearer (\S+)$/)?.[1];
  const claims = token ? verifyRoutesToken(token, secret) : null;
  if (!claims) throw new UnauthorizedException({ statusCode: 401, error: 'Unauthorized', message: "A valid routes token is required (a machine's ROUTES_TOKEN)", field: 'authorization' });
  return claims;
}
