import { BadRequestException, Body, Controller, Delete, Get, HttpCode, Param, Post, Put, Query, Req, Res } from '@nestjs/common';
import { ApiTags } from '@nestjs/swagger';
import type { Request, Response } from 'express';
import { z } from 'zod';
import {
  DEFAULT_TEMPLATE,
  isBase64,
  MAX_PATH_LENGTH,
  MAX_SEGMENT_BYTES,
  RESERVED_PATH_SEGMENTS,
  TEMPLATE_TYPES,
  type ProjectFileContent,
} from '@velocity/shared';
import { parseOr400 } from '../common/validation';
import { ProjectsService, validPath } from './projects.service';
import { CurrentUser } from '../auth/auth.guard';
import type { AuthUser } from '../auth/auth-user';
import { ApiEndpoint } from '../openapi/api-endpoint';
import { projectFileListSchema, projectListSchema, projectViewSchema, writtenFileSchema } from '../openapi/schemas';
import { listQueryShape, parseListQuery } from '../common/listing';

/** A UTF-16 surrogate without its pair: not a character, and Postgres would store U+FFFD instead. */
const LONE_SURROGATE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/;
export const createProjectBody = z
  .object({
    name: z
      .string()
      .trim()
      .min(1, 'must not be empty')
      .max(200, 'must be at most 200 characters')
      // eslint-disable-next-line no-control-regex
      .regex(/^[^\u0000-\u001f\u007f]*$/, 'must not contain control characters (NUL, newlines, tabs…)')
      .refine((name) => !LONE_SURROGATE.test(name), 'must be well-formed Unicode (no lone surrogates)'),
    templateType: z.enum(TEMPLATE_TYPES, `must be one of: ${TEMPLATE_TYPES.join(', ')}`).default(DEFAULT_TEMPLATE),
  })
  .strict();
/** A text file's content: Postgres text holds neither NUL nor lone surrogates (it would store U+FFFD). */
const fileText = z
  .string()
  .refine((text) => !text.includes('\0'), 'contains a NUL byte: send a binary file as raw bytes (a non-JSON body) or as { "base64": … }')
  .refine((text) => !LONE_SURROGATE.test(text), 'is not valid UTF-8 (a lone surrogate, \\uD800–\\uDFFF): send binary data as raw bytes or as base64');

/**
 * The JSON body of a file PUT: `{ "content": "<text>" }` for a text file, or
 * `{ "base64": "<bytes>" }` for a binary one; exactly one of them.
 */
export const putFileBody = z
  .object({
    content: fileText.optional().describe("The file's text (UTF-8)"),
    base64: z
      .string()
      .refine(isBase64, 'must be standard base64 (A-Z a-z 0-9 + /, padded with =)')
      .optional()
      .describe("The file's bytes in standard base64 (RFC 4648, padded), for a binary file"),
  })
  .strict()
  .superRefine((body, ctx) => {
    if (body.content === undefined && body.base64 === undefined) {
      ctx.addIssue({ code: 'custom', path: ['content'], message: 'required: the text, or base64 for a binary file' });
    } else if (body.content !== undefined && body.base64 !== undefined) {
      ctx.addIssue({ code: 'custom', path: ['base64'], message: 'send content (text) or base64 (bytes), not both' });
    }
  });
export const projectIdParam = z.string().uuid();
export const listProjectsQuery = z.object(listQueryShape).strict();
const listProjectsQueryDoc = {
  limit: { schema: listQueryShape.limit, description: 'Projects on a page, 1-100 (default 20)' },
  cursor: { schema: z.string(), description: '`nextCursor` of the page before' },
};

const idParam = { id: { schema: projectIdParam, description: 'The project id' } };
/** The file path: the rest of the URL, checked by the shared path rules (libs/shared file-paths), not a zod schema. */
const filePathParam = {
  schema: { type: 'string', minLength: 1, maxLength: MAX_PATH_LENGTH },
  description:
    "The file's path in the project: the rest of the URL, percent-decoded (`src/App.jsx`; encode `#`, `?`, `%`); `./` segments are dropped. " +
    `Refused (400 naming \`path\`): absolute paths, \`..\`, backslashes, empty or blank segments, NUL and control characters, ${RESERVED_PATH_SEGMENTS.join(', ')}, ` +
    `over ${MAX_PATH_LENGTH} characters or a name over ${MAX_SEGMENT_BYTES} bytes.`,
};
const projectNotFound = 'No such project (or another user\'s: answered alike)';
const demoReadOnly = '`id`: the demo project is read-only (anyone may preview it; no one may change its files)';
const publishFailed = 'The change was saved, but running previews could not be told: send the same request again (it is idempotent)';

/**
 * Projects and their files.
 *
 * - `POST /v1/projects` `{ name, templateType? }` → 201 the project. It has no files
 *   until its first preview, which seeds it from its template; a project whose
 *   files were all put by the client before that keeps just those.
 * - `GET /v1/projects?limit=&cursor=` → `{ projects, nextCursor }`: the user's projects, most recently changed first.
 * - `GET /v1/projects/:id` → the project.
 * - `GET /v1/projects/:id/files` → `{ files: [{ path, bytes, binary, updatedAt }] }` (`bytes`: real bytes).
 * - `PUT /v1/projects/:id/files/<path>` with JSON `{ "content": string }` (text) or
 *   `{ "base64": string }` (bytes), or any non-JSON body (its bytes, as sent) → 201 when
 *   created, 200 when replaced: `{ path, bytes, created, fileCount, projectBytes }`.
 *   The path is the rest of the URL, percent-decoded (`src/App.jsx`; encode `#`, `?`, `%`).
 * - `DELETE /v1/projects/:id/files/<path>` → 204; 404 naming `path` when there is no such file.
 *
 * Every running preview of the project gets each change (see machines/file-changes).
 * Errors: 400 naming `path`, `content` or `base64` (or `id`, `name`, `templateType`), 413 naming
 * `content` for a file or project over its size limit (in real bytes), 404 for an unknown project.
 */
@ApiTags('projects')
@Controller('v1/projects')
export class ProjectsController {
  constructor(private readonly projects: ProjectsService) {}

  @Post()
  @HttpCode(201)
  @ApiEndpoint({
    summary: 'Create a project',
    description: 'It has no files until its first preview, which seeds it from its template; a project whose files were all put before then keeps just those.',
    auth: 'user',
    body: { schema: createProjectBody },
    ok: { 201: { description: 'The project', schema: projectViewSchema } },
    errors: { 400: '`name` or `templateType` (or an unknown field) is not valid; the message and `field` name it' },
  })
  create(@Body() body: unknown, @CurrentUser() user: AuthUser) {
    const { name, templateType } = parseOr400(createProjectBody, body ?? {});
    return this.projects.create(user, name, templateType);
  }

  @Get()
  @ApiEndpoint({
    summary: "The user's projects, most recently changed first, a page at a time",
    description: 'Each page holds at most `limit` projects; `nextCursor` (null on the last page) asks for the next. The demo project is not listed. With auth off, every project.',
    auth: 'user',
    query: listProjectsQueryDoc,
    ok: { 200: { description: 'A page of projects', schema: projectListSchema } },
    errors: { 400: '`limit`: not 1-100; `cursor`: not a cursor this api gave' },
  })
  list(@Query() query: unknown, @CurrentUser() user: AuthUser) {
    return this.projects.list(user, parseListQuery(listProjectsQuery, query));
  }

  @Get(':id')
  @ApiEndpoint({
    summary: 'A project',
    auth: 'user',
    params: idParam,
    ok: { 200: { description: 'The project', schema: projectViewSchema } },
    errors: { 400: '`id`: not a uuid', 404: projectNotFound },
  })
  get(@Param('id') id: string, @CurrentUser() user: AuthUser) {
    return this.projects.get(user, parseOr400(projectIdParam, id, 'id'));
  }

  @Get(':id/files')
  @ApiEndpoint({
    summary: "A project's files, without their content",
    auth: 'user',
    params: idParam,
    ok: { 200: { description: 'The files, ordered by path', schema: projectFileListSchema } },
    errors: { 400: '`id`: not a uuid', 404: projectNotFound },
  })
  listFiles(@Param('id') id: string, @CurrentUser() user: AuthUser) {
    return this.projects.listFiles(user, parseOr400(projectIdParam, id, 'id'));
  }

  @Put(':id/files')
  @ApiEndpoint({
    summary: 'A file write without a path: always refused',
    auth: 'user',
    params: idParam,
    ok: {},
    errors: {
      400: '`id`: not a uuid; `path`: empty name (the path goes after `/files/`); `body`: not valid JSON',
      413: '`body`: larger than the file limit',
      415: '`content-type`: a body that is not `application/json` (UTF-8)',
    },
  })
  putWithoutPath(@Param('id') id: string) {
    parseOr400(projectIdParam, id, 'id');
    throw new BadRequestException({ statusCode: 400, error: 'Bad Request', message: 'path: empty name', field: 'path' });
  }

  @Put(':id/files/*path')
  @ApiEndpoint({
    summary: 'Write one file (create or replace)',
    description: "Committed first, then sent to the project's running previews, which apply it (Vite hot-reloads).",
    auth: 'user',
    params: { ...idParam, path: filePathParam },
    body: {
      schema: putFileBody,
      description: 'JSON `{ "content" }` for text or `{ "base64" }` for bytes; any other media type (`application/octet-stream`, `image/png`…) is the file\'s bytes as they are',
      maxSize: 'the file limit (MAX_FILE_BYTES): JSON-escaped or base64 for JSON, exactly for raw bytes',
      raw: "The file's bytes, stored as they are (a binary file): any media type but JSON",
    },
    ok: {
      200: { description: 'Replaced', schema: writtenFileSchema },
      201: { description: 'Created', schema: writtenFileSchema },
    },
    errors: {
      400:
        '`id`: not a uuid; `path`: refused by the path rules, or a new path when the project has MAX_PROJECT_FILES files; ' +
        '`content`: missing, not a string, holding a NUL byte or not valid UTF-8 (a lone surrogate); `base64`: not standard base64, or sent with `content` (or an unknown field)',
      403: demoReadOnly,
      404: projectNotFound,
      413: '`content`: the file is over MAX_FILE_BYTES, or the project would be over MAX_PROJECT_BYTES (real bytes: UTF-8 text, decoded base64)',
      503: publishFailed,
    },
  })
  async putFile(
    @Param('id') id: string,
    @Req() req: Request,
    @Body() body: unknown,
    @Res({ passthrough: true }) res: Response,
    @CurrentUser() user: AuthUser,
  ) {
    const projectId = parseOr400(projectIdParam, id, 'id');
    const path = validPath(filePathOf(req));
    const written = await this.projects.putFile(user, projectId, path, fileOfBody(body));
    res.status(written.created ? 201 : 200);
    return written;
  }

  @Delete(':id/files/*path')
  @HttpCode(204)
  @ApiEndpoint({
    summary: 'Remove one file',
    auth: 'user',
    params: { ...idParam, path: filePathParam },
    ok: { 204: { description: 'Removed' } },
    errors: { 400: '`id`: not a uuid; `path`: refused by the path rules', 403: demoReadOnly, 404: `${projectNotFound}; \`path\`: the project has no such file`, 503: publishFailed },
  })
  async deleteFile(@Param('id') id: string, @Req() req: Request, @CurrentUser() user: AuthUser) {
    const projectId = parseOr400(projectIdParam, id, 'id');
    await this.projects.deleteFile(user, projectId, validPath(filePathOf(req)));
  }
}

/** The file a PUT carries: a raw body's bytes (a Buffer from the raw parser), else the JSON body's text or base64. */
function fileOfBody(body: unknown): ProjectFileContent {
  if (Buffer.isBuffer(body)) return { content: body.toString('base64'), encoding: 'base64' };
  const { content, base64 } = parseOr400(putFileBody, body ?? {});
  return base64 !== undefined ? { content: base64, encoding: 'base64' } : { content: content! };
}

/**
 * The file path of a request, from the raw URL rather than the router's decoded
 * segments, so the path rules see exactly what was sent (`a//b`, `%2e%2e`, `%5C`).
 */
function filePathOf(req: Request): string {
  const rawPath = (req.originalUrl ?? req.url).split('?')[0];
  const match = /^\/v1\/projects\/[^/]+\/files\/(.*)$/.exec(rawPath);
  if (!match) throw new BadRequestException({ statusCode: 400, error: 'Bad Request', message: 'path: missing', field: 'path' });
  try {
    return decodeURIComponent(match[1]);
  } catch {
    throw new BadRequestException({ statusCode: 400, error: 'Bad Request', message: 'path: not valid percent-encoding', field: 'path' });
  }
}
