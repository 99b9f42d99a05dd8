import { Controller, Get, GoneException, Headers, Inject, NotFoundException, Param } from '@nestjs/common';
import { ApiTags } from '@nestjs/swagger';
import { z } from 'zod';
import { isSessionLive } from '@velocity/contracts';
import { type SessionQueries } from '@velocity/session-store';
import { parseOr400 } from '../common/validation';
import { MachineAccess } from '../machines/machine-access';
import { SESSION_STORE } from '../tokens';
import { ApiEndpoint } from '../openapi/api-endpoint';
import { machineRouteSchema } from '../openapi/schemas';

export const routeIdParam = z.string().uuid();

/**
 * Which machine serves a route id: what a preview container on Fly.io asks
 * before it answers a misrouted request with `fly-replay: instance=<machineId>`.
 */
@ApiTags('machines')
@Controller('v1/routes')
export class RoutesController {
  constructor(
    @Inject(SESSION_STORE) private readonly store: SessionQueries,
    private readonly access: MachineAccess,
  ) {}

  /**
   * Only live machines ask: the route map is not public. Any route id, since Fly
   * replays requests for any session to the machine that serves it; the answer
   * names the machine only, never the session behind the route.
   */
  @Get(':routeId')
  @ApiEndpoint({
    summary: 'Which machine serves a route id',
    description:
      "What a preview container on Fly.io asks before it answers a misrouted request with `fly-replay: instance=<machineId>`. The machine token of a live session (any session's route id may be asked).",
    auth: 'machine',
    params: { routeId: { schema: routeIdParam, description: 'The route id (the id in the preview URL)' } },
    ok: { 200: { description: 'The machine', schema: machineRouteSchema } },
    errors: {
      400: '`routeId`: not a uuid',
      403: "`authorization`: the token is for another project than its session's",
      404: "`routeId`: no session has this route id, or it has no machine yet; `authorization`: the token's session does not exist",
      410: "`routeId`: the session has ended; `authorization`: the token's session has ended and the token no longer works",
    },
  })
  async route(@Param('routeId') raw: string, @Headers('authorization') authorization?: string) {
    const claims = this.access.claims(authorization);
    const routeId = parseOr400(routeIdParam, raw, 'routeId');
    // The caller's session and the route's are read together: one round trip.
    const [, session] = await Promise.all([this.access.liveSession(claims, 'authorization'), this.store.getSessionByRoute(routeId)]);
    if (session && !isSessionLive(session.status)) {
      throw new GoneException({ statusCode: 410, error: 'Gone', message: `routeId: the session of route ${routeId} has ended`, field: 'routeId', routeId });
    }
    if (!session?.containerId) {
      throw new NotFoundException({ statusCode: 404, error: 'Not Found', message: `routeId: no machine serves route ${routeId}`, field: 'routeId', routeId });
    }
    return { routeId, machineId: session.containerId };
  }
}
