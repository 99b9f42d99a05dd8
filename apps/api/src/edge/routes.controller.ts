import { Controller, Get, GoneException, Inject, NotFoundException, Param } from '@nestjs/common';
import { z } from 'zod';
import type { SessionStore } from '@velocity/shared';
import { parseOr400 } from '../common/validation';
import { SESSION_STORE } from '../tokens';

/**
 * Which machine serves a session: what a preview container on Fly.io asks
 * before it answers a misrouted request with `fly-replay: instance=<machineId>`.
 */
@Controller('v1/routes')
export class RoutesController {
  constructor(@Inject(SESSION_STORE) private readonly store: SessionStore) {}

  @Get(':sessionId')
  async route(@Param('sessionId') raw: string) {
    const sessionId = parseOr400(z.string().uuid(), raw, 'sessionId');
    const session = await this.store.getSession(sessionId);
    if (session && ['ending', 'ended', 'error'].includes(session.status)) {
      throw new GoneException({ statusCode: 410, error: 'Gone', message: `Session ${sessionId} has ended`, sessionId });
    }
    if (!session?.containerId) {
      throw new NotFoundException({ statusCode: 404, error: 'Not Found', message: `Session ${sessionId} has no machine`, sessionId });
    }
    return { sessionId, machineId: session.containerId };
  }
}
