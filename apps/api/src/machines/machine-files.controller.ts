import { Controller, Get, Headers, Inject, Param } from '@nestjs/common';
import { ApiTags } from '@nestjs/swagger';
import { z } from 'zod';
import type { ProjectStore } from '@velocity/session-store';
import { parseOr400 } from '../common/validation';
import { LIVE_SESSION_ERRORS, MachineAccess } from './machine-access';
import { SESSION_STORE } from '../tokens';
import { ApiEndpoint } from '../openapi/api-endpoint';
import { machineFilesSchema } from '../openapi/schemas';

export const machineSessionIdParam = z.string().uuid();

/**
 * Where a preview machine reads its project's files. Machines hold no database
 * credentials: a token signed for one session opens its project while that
 * session is live.
 */
@ApiTags('machines')
@Controller('v1/machines')
export class MachineFilesController {
  constructor(
    private readonly access: MachineAccess,
    @Inject(SESSION_STORE) private readonly store: ProjectStore,
  ) {}

  @Get(':sessionId/files')
  @ApiEndpoint({
    summary: "The project's files, with their content, for the session's machine",
    description: 'Text files are `{ path, content }`; binary files `{ path, content, encoding: "base64" }`, their bytes in base64.',
    auth: 'machine',
    params: { sessionId: { schema: machineSessionIdParam, description: 'The session the machine serves (its token is for it)' } },
    ok: { 200: { description: "Every file of the session's project", schema: machineFilesSchema } },
    errors: { 400: '`sessionId`: not a uuid', ...LIVE_SESSION_ERRORS },
  })
  async files(@Param('sessionId') sessionIdRaw: string, @Headers('authorization') authorization?: string) {
    const sessionId = parseOr400(machineSessionIdParam, sessionIdRaw, 'sessionId');
    const session = await this.access.open(authorization, sessionId);
    return { files: await this.store.listProjectFiles(session.projectId) };
  }
}
