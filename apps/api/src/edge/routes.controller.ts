import { Controller, Get, GoneException, Headers, Inject, NotFoundException, Param } from '@nestjs/common';
import { ApiTags } from '@nestjs/swagger';
import { z } from 'zod';
import type { Config, SessionStore } from '@velocity/shared';
import { parseOr400 } from '../common/validation';
import { machineClaims } from '../machines/machine-auth';
import { CONFIG, SESSION_STORE } from '../tokens';
import { ApiEndpoint } from '../openapi/api-endpoint';
import { machineRouteSchema } from '../openapi/schemas';

export const routeIdParam = z.string().uuid();

/**
 * Which machine serves a session: what a preview container on Fly.io asks
 * before it answers a misrouted request with `fly-replay: instance=<machineId>`.
 */
@ApiTags('machines')
@Controller('v1/routes')
export class RoutesController {
  constructor(
    @Inject(SESSION_STORE) private readonly store: SessionStore,
    @Inject(CONFIG) private readonly config: Config,
  ) {}

  /** Only machines ask: a valid machine token of any session (issue 6); the route map is not public. */
  @Get(':sessionId')
  @ApiEndpoint({
    summary: 'Which machine serves a route id',
    description: 'What a preview container on Fly.io asks before it answers a misrouted request with `fly-replay: instance=<machineId>`. A valid machine token of any session.',
    auth: 'machine',
    params: { sessionId: { schema: routeIdParam, description: 'The route id (the id in the preview URL)' } },
    ok: { 200: { description: 'The machine', schema: machineRouteSchema } },
    errors: { 400: '`sessionId`: not a uuid', 404: 'No session has this route id, or it has no machine yet', 410: 'The session has ended' },
  })
  async route(@Param('sessionId') raw: string, @Headers('authorization') authorization?: string) {
    machineClaims(authorization, this.config.MACHINE_TOKEN_SECRET);
    const sessionId = parseOr400(routeIdParam, raw, 'sessionId');
    const session = await this.store.getSessionByRoute(sessionId);
    if (session && ['ending', 'ended', 'error'].includes(session.status)) {
      throw new GoneException({ statusCode: 410, error: 'Gone', message: `Session ${sessionId} has ended`, sessionId });
    }
    if (!session?.containerId) {
      throw new NotFoundException({ statusCode: 404, error: 'Not Found', message: `Session ${sessionId} has no machine`, sessionId });
    }
    return { sessionId: session.id, routeId: sessionId, machineId: session.containerId };
  }
}
