import { Controller, Get, Headers, Inject, Param } from '@nestjs/common';
import { ApiTags } from '@nestjs/swagger';
import { z } from 'zod';
import type { Config, SessionStore } from '@velocity/shared';
import { parseOr400 } from '../common/validation';
import { machineClaims } from './machine-auth';
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
    const claims = machineClaims(authorization, this.config.MACHINE_TOKEN_SECRET, sessionId);
    return { files: await this.store.listProjectFiles(claims.projectId) };
  }
}
