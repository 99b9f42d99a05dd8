import { extname } from 'node:path';
import { BadRequestException, Body, Controller, Delete, Get, HttpCode, Param, Patch, Post, Put, Query, Req, Res } from '@nestjs/common';
import { ApiTags } from '@nestjs/swagger';
import type { Request, Response } from 'express';
import { z } from 'zod';
import { DEFAULT_TEMPLATE, isBase64, MAX_PATH_LENGTH, MAX_SEGMENT_BYTES, RESERVED_PATH_SEGMENTS, TEMPLATE_TYPES, type ProjectFileContent } from '@velocity/contracts';
import { parseOr400 } from '../common/validation';
import { ProjectsService, quoteEtag, validPath, type FilesBatch } from './projects.service';
import { CurrentUser } from '../auth/auth.guard';
import type { AuthUser } from '../auth/auth-user';
import { ApiEndpoint } from '../openapi/api-endpoint';
import { appliedFilesSchema, projectFileListSchema, projectListSchema, projectViewSchema, writtenFileSchema } from '../openapi/schemas';
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

const fileContentShape = {
  content: fileText.optional().describe("The file's text (UTF-8)"),
  base64: z
    .string()
    .refine(isBase64, 'must be standard base64 (A-Z a-z 0-9 + /, padded with =)')
    .optional()
    .describe("The file's bytes in standard base64 (RFC 4648, padded), for a binary file"),
};

/** Exactly one of `content` and `base64`. */
function oneContent(body: { content?: string; base64?: string }, ctx: z.RefinementCtx) {
  if (body.content === undefined && body.base64 === undefined) {
    ctx.addIssue({ code: 'custom', path: ['content'], message: 'required: the text, or base64 for a binary file' });
  } else if (body.content !== undefined && body.base64 !== undefined) {
    ctx.addIssue({ code: 'custom', path: ['base64'], message: 'send content (text) or base64 (bytes), not both' });
  }
}

/**
 * The JSON body of a file PUT: `{ "content": "<text>" }` for a text file, or
 * `{ "base64": "<bytes>" }` for a binary one; exactly one of them.
 */
export const putFileBody = z.object(fileContentShape).strict().superRefine(oneContent);

const ifMatchValue = z.string().min(1).max(200).describe('The ETag the file must have now (as GET or a write answered it), or `*`: it must exist');
/** Files written and removed in one change: `{ write: [{ path, content | base64, ifMatch? }], delete: [path | { path, ifMatch? }] }`. */
export const patchFilesBody = z
  .object({
    write: z
      .array(z.object({ path: z.string().describe('The file path, by the same rules as in the URL of a PUT'), ...fileContentShape, ifMatch: ifMatchValue.optional() }).strict().superRefine(oneContent))
      .max(1000, 'at most 1000 files in one change')
      .default([]),
    delete: z
      .array(z.union([z.string(), z.object({ path: z.string(), ifMatch: ifMatchValue.optional() }).strict()]))
      .max(1000, 'at most 1000 files in one change')
      .default([]),
  })
  .strict()
  .refine((body) => body.write.length + body.delete.length > 0, { message: 'nothing to change: give write or delete', path: ['write'] });
export const projectIdParam = z.string().uuid();
/** One ETag as GET and writes answer it, or `*`. */
export const ifMatchHeader = z.string().regex(/^\s*(\*|"[0-9a-f]{64}")\s*$/, 'must be one ETag as this api gave it ("<64 hex digits>"), or *');
export const listProjectsQuery = z.object(listQueryShape).strict();
const listProjectsQueryDoc = {
  limit: { schema: listQueryShape.limit, description: 'Projects on a page, 1-100 (default 20)' },
  cursor: { schema: z.string(), description: '`nextCursor` of the page before' },
};

const idParam = { id: { schema: projectIdParam, description: 'The project id' } };
/** The file path: the rest of the URL, checked by the shared path rules (libs/contracts file-paths), not a zod schema. */
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
 * - `POST /v1/projects` `{ name, templateType? }` → 201 the project, holding its template's files.
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
    description: "It holds its template's files from the start (`GET /v1/projects/{id}/files` lists them); change or remove them like any other.",
    auth: 'user',
    body: { schema: createProjectBody },
    ok: { 201: { description: 'The project', schema: projectViewSchema } },
    errors: {
      400: '`name` or `templateType` (or an unknown field) is not valid; the message and `field` name it',
      403: "The user owns as many projects as their tier allows; `limit` names it (QUOTA_FREE_PROJECTS / QUOTA_PRO_PROJECTS), `max` is its value, `count` the user's projects",
    },
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

  @Get(':id/files/*path')
  @ApiEndpoint({
    summary: "One file's content, as stored",
    description:
      'The bytes as written (text as UTF-8), with a `Content-Type` from the file name and a strong `ETag` (its SHA-256) to send back as `If-Match` with a write; ' +
      '`If-None-Match` with the current ETag answers 304. Served so that no browser runs it on the api\'s origin (`Content-Security-Policy: sandbox`, `nosniff`).',
    auth: 'user',
    params: { ...idParam, path: filePathParam },
    headers: [{ name: 'If-None-Match', schema: z.string(), description: 'The ETag the client has: 304 when it is current' }],
    ok: {
      200: { description: "The file's bytes", content: { 'application/octet-stream': { schema: { type: 'string', format: 'binary' } } } },
      304: { description: 'Not modified: the ETag sent is current' },
    },
    errors: { 400: '`id`: not a uuid; `path`: refused by the path rules', 404: `${projectNotFound}; \`path\`: the project has no such file` },
  })
  async readFile(@Param('id') id: string, @Req() req: Request, @Res() res: Response, @CurrentUser() user: AuthUser) {
    const file = await this.projects.readFile(user, parseOr400(projectIdParam, id, 'id'), filePathOf(req));
    const etag = quoteEtag(file.etag);
    res.setHeader('etag', etag);
    res.setHeader('cache-control', 'no-cache');
    res.setHeader('x-content-type-options', 'nosniff');
    res.setHeader('content-security-policy', "default-src 'none'; sandbox");
    if (noneMatch(req.headers['if-none-match'], etag)) return void res.status(304).end();
    res.type(SOURCE_TYPES[extname(file.path).toLowerCase()] ?? (extname(file.path) || 'application/octet-stream'));
    res.status(200).end(file.bytes);
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
    const written = await this.projects.putFile(user, projectId, path, fileOfBody(body), ifMatchOf(req));
    res.status(written.created ? 201 : 200).setHeader('etag', written.etag);
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
    await this.projects.deleteFile(user, projectId, validPath(filePathOf(req)), ifMatchOf(req));
  }

  @Patch(':id/files')
  @ApiEndpoint({
    summary: 'Write and remove several files at once, all or nothing',
    description:
      'One transaction: every precondition (`ifMatch`), path rule and limit is checked on the project as it would be, then every file is written and removed, or none is. ' +
      "The project's running previews get the change as one (all files in place before Vite sees any), so the app is never seen half changed.",
    auth: 'user',
    params: idParam,
    body: { schema: patchFilesBody, maxSize: 'the project limit (MAX_PROJECT_BYTES), JSON-escaped or base64' },
    ok: { 200: { description: 'Applied', schema: appliedFilesSchema } },
    errors: {
      400: '`write.<i>.path` / `delete.<i>`: refused by the path rules, or named twice; `write.<i>.content` / `.base64`: as for PUT; `write`: nothing to change, or a new path past MAX_PROJECT_FILES; `If-Match`-like `ifMatch` not an ETag',
      403: demoReadOnly,
      404: `${projectNotFound}; \`delete.<i>\`: the project has no such file`,
      412: '`write.<i>.ifMatch` / `delete.<i>.ifMatch`: the file has another ETag now (answered as `etag`), or does not exist',
      413: '`write.<i>.content`: a file over MAX_FILE_BYTES; `write`: the project would be over MAX_PROJECT_BYTES',
      503: publishFailed,
    },
  })
  applyFiles(@Param('id') id: string, @Body() body: unknown, @CurrentUser() user: AuthUser) {
    return this.projects.applyFiles(user, parseOr400(projectIdParam, id, 'id'), batchOfBody(body));
  }
}

/** The file a PUT carries: a raw body's bytes (a Buffer from the raw parser), else the JSON body's text or base64. */
function fileOfBody(body: unknown): ProjectFileContent {
  if (Buffer.isBuffer(body)) return { content: body.toString('base64'), encoding: 'base64' };
  return fileContentOf(parseOr400(putFileBody, body ?? {}));
}

const fileContentOf = ({ content, base64 }: { content?: string; base64?: string }): ProjectFileContent =>
  base64 !== undefined ? { content: base64, encoding: 'base64' } : { content: content! };

function batchOfBody(body: unknown): FilesBatch {
  const parsed = parseOr400(patchFilesBody, body ?? {});
  return {
    write: parsed.write.map((entry) => ({ path: entry.path, file: fileContentOf(entry), ifMatch: entry.ifMatch })),
    delete: parsed.delete.map((entry) => (typeof entry === 'string' ? { path: entry } : entry)),
  };
}

/** Source files the media type table gets wrong for an editor (`.ts` is MPEG transport stream there). */
const SOURCE_TYPES: Record<string, string> = {
  '.ts': 'text/typescript; charset=utf-8',
  '.tsx': 'text/typescript; charset=utf-8',
  '.mts': 'text/typescript; charset=utf-8',
  '.cts': 'text/typescript; charset=utf-8',
  '.jsx': 'text/javascript; charset=utf-8',
  '.vue': 'text/plain; charset=utf-8',
  '.svelte': 'text/plain; charset=utf-8',
};

/** Whether an If-None-Match header names this ETag (or is `*`): the client's copy is current. */
function noneMatch(header: string | undefined, etag: string): boolean {
  if (!header) return false;
  return header.split(',').some((tag) => tag.trim() === '*' || tag.trim().replace(/^W\//, '') === etag);
}

/** The If-Match header of a write, when sent (one value: a list of ETags is not a precondition an editor sends). */
function ifMatchOf(req: Request): string | undefined {
  const header = req.headers['if-match'];
  if (header === undefined) return undefined;
  const parsed = ifMatchHeader.safeParse(header);
  if (!parsed.success) throw new BadRequestException({ statusCode: 400, error: 'Bad Request', message: `If-Match: ${parsed.error.issues[0].message}`, field: 'If-Match' });
  return parsed.data;
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
