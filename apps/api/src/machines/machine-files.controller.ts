import { Body, Controller, Get, Headers, HttpCode, Inject, Param, Post } from '@nestjs/common';
import { ApiTags } from '@nestjs/swagger';
import { z } from 'zod';
import { machineFilesReadSchema, MAX_PATHS_PER_READ } from '@velocity/contracts';
import type { ProjectStore } from '@velocity/session-store';
import { parseOr400 } from '../common/validation';
import { PATHS_BODY_LIMIT } from '../common/json-body';
import { LIVE_SESSION_ERRORS, MachineAccess } from './machine-access';
import { SESSION_STORE } from '../tokens';
import { ApiEndpoint } from '../openapi/api-endpoint';
import { machineFilesSchema } from '../openapi/schemas';

export const machineSessionIdParam = z.string().uuid();

const sessionIdDoc = { schema: machineSessionIdParam, description: 'The session the machine serves (its token is for it)' };

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
    params: { sessionId: sessionIdDoc },
    ok: { 200: { description: "Every file of the session's project", schema: machineFilesSchema } },
    errors: { 400: '`sessionId`: not a uuid', ...LIVE_SESSION_ERRORS },
  })
  async files(@Param('sessionId') sessionIdRaw: string, @Headers('authorization') authorization?: string) {
    const sessionId = parseOr400(machineSessionIdParam, sessionIdRaw, 'sessionId');
    const session = await this.access.open(authorization, sessionId);
    return { files: await this.store.listProjectFiles(session.projectId) };
  }

  /** A read, not a change: POST only because a batch's paths would not fit in a URL. */
  @Post(':sessionId/files')
  @HttpCode(200)
  @ApiEndpoint({
    summary: "Some of the project's files, by path, with their content, for the session's machine",
    description:
      'What a file-changes notice names, read in one request: the files as they are now (a later write may have changed one since the notice; its own notice follows). ' +
      `At most ${MAX_PATHS_PER_READ} paths; a path the project has no file at (removed since) is left out. Files in the shape of GET.`,
    auth: 'machine',
    params: { sessionId: sessionIdDoc },
    body: { schema: machineFilesReadSchema, maxSize: PATHS_BODY_LIMIT },
    ok: { 200: { description: 'The named files the project has, in path order', schema: machineFilesSchema } },
    errors: { 400: `\`sessionId\`: not a uuid; \`paths\`: empty, more than ${MAX_PATHS_PER_READ}, or a path that is not a non-empty string (or an unknown field)`, ...LIVE_SESSION_ERRORS },
  })
  async read(@Param('sessionId') sessionIdRaw: string, @Body() body: unknown, @Headers('authorization') authorization?: string) {
    const sessionId = parseOr400(machineSessionIdParam, sessionIdRaw, 'sessionId');
    const claims = this.access.claims(authorization, sessionId);
    const { paths } = parseOr400(machineFilesReadSchema, body ?? {});
    const session = await this.access.liveSession(claims);
    return { files: await this.store.listProjectFiles(session.projectId, paths) };
  }
}
