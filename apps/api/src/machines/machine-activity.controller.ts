import {
  Body,
  ConflictException,
  Controller,
  Headers,
  HttpCode,
  Inject,
  NotFoundException,
  Param,
  Post,
} from '@nestjs/common';
import { ApiTags } from '@nestjs/swagger';
import { z } from 'zod';
import type { Config, Logger, SessionStore } from '@velocity/shared';
import { parseOr400 } from '../common/validation';
import { machineClaims } from './machine-auth';
import { CONFIG, LOGGER, SESSION_STORE } from '../tokens';
import { ApiEndpoint } from '../openapi/api-endpoint';
import { activityRecordedSchema } from '../openapi/schemas';
import { machineSessionIdParam } from './machine-files.controller';

export const activityBody = z.object({ lastActivityAt: z.iso.datetime({ offset: true }) }).strict();

/**
 * Where a preview machine reports that it is in use (requests, open HMR
 * connections), at most every ACTIVITY_REPORT_EVERY_MS. Cleanup's sweep ends a
 * session whose last activity is older than its tier's idle limit. Same token as
 * the files endpoint: one session, nothing else.
 */
@ApiTags('machines')
@Controller('v1/machines')
export class MachineActivityController {
  constructor(
    @Inject(CONFIG) private readonly config: Config,
    @Inject(SESSION_STORE) private readonly store: SessionStore,
    @Inject(LOGGER) private readonly logger: Logger,
  ) {}

  @Post(':sessionId/activity')
  @HttpCode(200)
  @ApiEndpoint({
    summary: 'The machine reports that its preview is in use',
    description: "At most every ACTIVITY_REPORT_EVERY_MS; cleanup ends a session idle for longer than its tier's idle limit.",
    auth: 'machine',
    params: { sessionId: { schema: machineSessionIdParam, description: 'The session the machine serves (its token is for it)' } },
    body: { schema: activityBody },
    ok: { 200: { description: 'Recorded: the later of the stored and the reported time (a future time counts as now)', schema: activityRecordedSchema } },
    errors: {
      400: '`sessionId`: not a uuid; `lastActivityAt` (or an unknown field): not an ISO 8601 date-time with offset',
      403: 'The token is for another session',
      404: 'No such session',
      409: 'The session is not active (`status`): the machine may stop reporting',
    },
  })
  async activity(@Param('sessionId') sessionIdRaw: string, @Body() body: unknown, @Headers('authorization') authorization?: string) {
    const sessionId = parseOr400(machineSessionIdParam, sessionIdRaw, 'sessionId');
    machineClaims(authorization, this.config.MACHINE_TOKEN_SECRET, sessionId);
    const { lastActivityAt } = parseOr400(activityBody, body ?? {});

    const recorded = await this.store.recordActivity(sessionId, new Date(lastActivityAt));
    if (recorded === null) {
      const session = await this.store.getSession(sessionId);
      if (!session) throw new NotFoundException({ statusCode: 404, error: 'Not Found', message: `Session ${sessionId} does not exist`, sessionId });
      // The machine may stop reporting: its session will not come back.
      throw new ConflictException({ statusCode: 409, error: 'Conflict', message: `Session ${sessionId} is ${session.status}, not active`, sessionId, status: session.status });
    }
    this.logger.debug('activity recorded', { sessionId, lastActivityAt: recorded });
    return { sessionId, lastActivityAt: recorded };
  }
}
