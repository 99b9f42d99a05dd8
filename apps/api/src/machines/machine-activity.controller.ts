import { Body, ConflictException, Controller, Headers, HttpCode, Inject, Param, Post } from '@nestjs/common';
import { ApiTags } from '@nestjs/swagger';
import { z } from 'zod';
import type { Logger } from '@velocity/runtime';
import type { PreviewSession, SessionRecords } from '@velocity/session-store';
import { parseOr400 } from '../common/validation';
import { LIVE_SESSION_ERRORS, MachineAccess, sessionEnded } from './machine-access';
import { LOGGER, SESSION_STORE } from '../tokens';
import { ApiEndpoint } from '../openapi/api-endpoint';
import { activityRecordedSchema } from '../openapi/schemas';
import { machineSessionIdParam } from './machine-files.controller';

export const activityBody = z.object({ lastActivityAt: z.iso.datetime({ offset: true }) }).strict();

/**
 * Where a preview machine reports that it is in use (requests, open HMR
 * connections), at most every ACTIVITY_REPORT_EVERY_MS. Cleanup's sweep ends a
 * session whose last activity is older than its tier's idle limit. Same token as
 * the files endpoint: one session, while it is live, nothing else.
 */
@ApiTags('machines')
@Controller('v1/machines')
export class MachineActivityController {
  constructor(
    private readonly access: MachineAccess,
    @Inject(SESSION_STORE) private readonly store: SessionRecords,
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
      ...LIVE_SESSION_ERRORS,
      409: 'The session is not active yet (`status`: queued, creating or starting): report again later',
    },
  })
  async activity(@Param('sessionId') sessionIdRaw: string, @Body() body: unknown, @Headers('authorization') authorization?: string) {
    const sessionId = parseOr400(machineSessionIdParam, sessionIdRaw, 'sessionId');
    const claims = this.access.claims(authorization, sessionId);
    const { lastActivityAt } = parseOr400(activityBody, body ?? {});
    const session = await this.access.liveSession(claims);

    const recorded = await this.store.recordActivity(sessionId, new Date(lastActivityAt));
    if (recorded === null) throw notRecorded(session);
    this.logger.debug('activity recorded', { sessionId, lastActivityAt: recorded });
    return { sessionId, lastActivityAt: recorded };
  }
}

/** Why a live session's activity was not recorded (only an active one's is), from the row read just before. */
function notRecorded(session: PreviewSession): Error {
  // Active when read but not when written: it has ended since (active only moves to ending).
  if (session.status === 'active') return sessionEnded(session.id, 'sessionId');
  const message = `sessionId: session ${session.id} is ${session.status}, not active yet`;
  return new ConflictException({ statusCode: 409, error: 'Conflict', message, field: 'sessionId', sessionId: session.id, status: session.status });
}
