import { Controller, ForbiddenException, Get, Headers, Inject, Param, UnauthorizedException } from '@nestjs/common';
import { ApiTags } from '@nestjs/swagger';
import { z } from 'zod';
import { verifyMachineToken, type Config, type SessionStore } from '@velocity/shared';
import { parseOr400 } from '../common/validation';
import { CONFIG, SESSION_STORE } from '../tokens';
import { ApiEndpoint } from '../openapi/api-endpoint';
import { machineFilesSchema } from '../openapi/schemas';

export const machineSessionIdParam = z.string().uuid();

/**
 * Where a preview machine reads its project's files. Machines hold no database
 * credentials: a short-lived token signed for one session opens one project.
 */
@ApiTags('machines')
@Controller('v1/machines')
export class MachineFilesController {
  constructor(
    @Inject(CONFIG) private readonly config: Config,
    @Inject(SESSION_STORE) private readonly store: SessionStore,
  ) {}

  @Get(':sessionId/files')
  @ApiEndpoint({
    summary: "The project's files, with their content, for the session's machine",
    auth: 'machine',
    params: { sessionId: { schema: machineSessionIdParam, description: 'The session the machine serves (its token is for it)' } },
    ok: { 200: { description: "Every file of the session's project", schema: machineFilesSchema } },
    errors: { 400: '`sessionId`: not a uuid', 403: 'The token is for another session' },
  })
  async files(@Param('sessionId') sessionIdRaw: string, @Headers('authorization') authorization?: string) {
    const sessionId = parseOr400(machineSessionIdParam, sessionIdRaw, 'sessionId');
    const token = authorization?.match(/^Bearer (\S+)$/)?.[1];
    const claims = token ? verifyMachineToken(token, this.config.MACHINE_TOKEN_SECRET) : null;
    if (!claims) throw new UnauthorizedException({ statusCode: 401, error: 'Unauthorized', message: 'A valid machine token is required', field: 'authorization' });
    if (claims.sessionId !== sessionId) throw new ForbiddenException({ statusCode: 403, error: 'Forbidden', message: 'The token is for another session' });
    return { files: await this.store.listProjectFiles(claims.projectId) };
  }
}
