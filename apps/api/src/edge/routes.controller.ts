import { Controller, Get, GoneException, Headers, Inject, NotFoundException, Param } from '@nestjs/common';
import { ApiTags } from '@nestjs/swagger';
import { z } from 'zod';
import { isSessionLive, type Config } from '@velocity/contracts';
import { type SessionQueries } from '@velocity/session-store';
import { parseOr400 } from '../common/validation';
import { routesClaims } from '../machines/machine-auth';
import { CONFIG, SESSION_STORE } from '../tokens';
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
    @Inject(CONFIG) private readonly config: Config,
  ) {}

  /**
   * Only machines ask, with the routes token each is started with (pooled ones
   * too, before any session is theirs): the route map is not public. Any route
   * id, since Fly replays requests for any session to the machine that serves
   * it; the answer names the machine only, never the session behind the route.
   */
  @Get(':routeId')
  @ApiEndpoint({
    summary: 'Which machine serves a route id',
    description:
      "What a preview container on Fly.io asks before it answers a misrouted request with `fly-replay: instance=<machineId>`. Authorized by a machine's routes token (`ROUTES_TOKEN`, which every machine is started with); any route id may be asked.",
    auth: 'machine',
    params: { routeId: { schema: routeIdParam, description: 'The route id (the id in the preview URL)' } },
    ok: { 200: { description: 'The machine', schema: machineRouteSchema } },
    errors: {
      400: '`routeId`: not a uuid',
      401: '`authorization`: no valid routes token (a session\'s machine token is not one)',
      404: '`routeId`: no session has this route id, or it has no machine yet',
      410: '`routeId`: the session has ended',
    },
  })
  async route(@Param('routeId') raw: string, @Headers('authorization') authorization?: string) {
    routesClaims(authorization, this.config.MACHINE_TOKEN_SECRET);
    const routeId = parseOr400(routeIdParam, raw, 'routeId');
    const session = await this.store.getSessionByRoute(routeId);
    if (session && !isSessionLive(session.status)) {
      throw new GoneException({ statusCode: 410, error: 'Gone', message: `routeId: the session of route ${routeId} has ended`, field: 'routeId', routeId });
    }
    if (!session?.containerId) {
      throw new NotFoundException({ statusCode: 404, error: 'Not Found', message: `routeId: no machine serves route ${routeId}`, field: 'routeId', routeId });
    }
    return { routeId, machineId: session.containerId };
  }
}
