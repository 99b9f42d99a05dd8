import { Body, Controller, Headers, HttpCode, Inject, Param, Post } from '@nestjs/common';
import { ApiTags } from '@nestjs/swagger';
import { buildStateSchema } from '@velocity/contracts';
import { type Logger } from '@velocity/runtime';
import { parseOr400 } from '../common/validation';
import { LIVE_SESSION_ERRORS, MachineAccess } from './machine-access';
import { LOGGER } from '../tokens';
import { ApiEndpoint } from '../openapi/api-endpoint';
import { diagnosticsRecordedSchema } from '../openapi/schemas';
import { machineSessionIdParam } from './machine-files.controller';
import { SessionBuildStates } from '../sessions/session-build-state';

/**
 * Where a preview machine reports its build state (each change, debounced):
 * the api appends it to the session's events as `diagnostics` when it says
 * something new, and `GET /v1/sessions/:id` answers it as `build`. Same token
 * as the other machine routes: one session, while it is live, nothing else.
 */
@ApiTags('machines')
@Controller('v1/machines')
export class MachineDiagnosticsController {
  constructor(
    private readonly access: MachineAccess,
    private readonly builds: SessionBuildStates,
    @Inject(LOGGER) private readonly logger: Logger,
  ) {}

  @Post(':sessionId/diagnostics')
  @HttpCode(200)
  @ApiEndpoint({
    summary: "The machine reports its preview's build state",
    description:
      'The whole current state: `errors` with every diagnostic (build errors Vite reported, modules the page could not load, runtime errors the page threw), or `ok` with none. ' +
      'Stored as a `diagnostics` event of the session when it differs from the current state.',
    auth: 'machine',
    params: { sessionId: { schema: machineSessionIdParam, description: 'The session the machine serves (its token is for it)' } },
    body: { schema: buildStateSchema },
    ok: { 200: { description: 'Received; `stored` is false when it said nothing new', schema: diagnosticsRecordedSchema } },
    errors: {
      400: '`sessionId`: not a uuid; a field of the state (`state`, `diagnostics.0.file`…, or an unknown one): not valid, named in `field`',
      ...LIVE_SESSION_ERRORS,
    },
  })
  async report(@Param('sessionId') sessionIdRaw: string, @Body() body: unknown, @Headers('authorization') authorization?: string) {
    const sessionId = parseOr400(machineSessionIdParam, sessionIdRaw, 'sessionId');
    const claims = this.access.claims(authorization, sessionId);
    const build = parseOr400(buildStateSchema, body ?? {});
    await this.access.liveSession(claims);
    const stored = await this.builds.report(sessionId, build);
    if (stored) this.logger.info('build state', { sessionId, state: build.state, diagnostics: build.diagnostics.length });
    return { sessionId, state: build.state, stored };
  }
}
