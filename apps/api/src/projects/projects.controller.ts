import { BadRequestException, Body, Controller, Delete, Get, HttpCode, Param, Post, Put, Req, Res } from '@nestjs/common';
import type { Request, Response } from 'express';
import { z } from 'zod';
import { DEFAULT_TEMPLATE, TEMPLATE_TYPES } from '@velocity/shared';
import { parseOr400 } from '../common/validation';
import { ProjectsService, validPath } from './projects.service';
import { CurrentUser } from '../auth/auth.guard';
import type { AuthUser } from '../auth/auth-user';

/** A UTF-16 surrogate without its pair: not a character, and Postgres would store U+FFFD instead. */
const LONE_SURROGATE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/;
const createProjectBody = z
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
/** The body of a file PUT: JSON `{ "content": "<the file's text>" }` (UTF-8 text only). */
const putFileBody = z.object({ content: z.string() }).strict();
const projectIdParam = z.string().uuid();

/**
 * Projects and their files.
 *
 * - `POST /v1/projects` `{ name, templateType? }` → 201 the project. It has no files
 *   until its first preview, which seeds it from its template; a project whose
 *   files were all put by the client before that keeps just those.
 * - `GET /v1/projects/:id` → the project.
 * - `GET /v1/projects/:id/files` → `{ files: [{ path, bytes, updatedAt }] }`.
 * - `PUT /v1/projects/:id/files/<path>` with JSON `{ "content": string }` → 201 when
 *   created, 200 when replaced: `{ path, bytes, created, fileCount, projectBytes }`.
 *   The path is the rest of the URL, percent-decoded (`src/App.jsx`; encode `#`, `?`, `%`).
 * - `DELETE /v1/projects/:id/files/<path>` → 204; 404 naming `path` when there is no such file.
 *
 * Every running preview of the project gets each change (see machines/file-changes).
 * Errors: 400 naming `path` or `content` (or `id`, `name`, `templateType`), 413 naming
 * `content` for a file or project over its size limit, 404 for an unknown project.
 */
@Controller('v1/projects')
export class ProjectsController {
  constructor(private readonly projects: ProjectsService) {}

  @Post()
  @HttpCode(201)
  create(@Body() body: unknown, @CurrentUser() user: AuthUser) {
    const { name, templateType } = parseOr400(createProjectBody, body ?? {});
    return this.projects.create(user, name, templateType);
  }

  @Get(':id')
  get(@Param('id') id: string, @CurrentUser() user: AuthUser) {
    return this.projects.get(user, parseOr400(projectIdParam, id, 'id'));
  }

  @Get(':id/files')
  listFiles(@Param('id') id: string, @CurrentUser() user: AuthUser) {
    return this.projects.listFiles(user, parseOr400(projectIdParam, id, 'id'));
  }

  @Put(':id/files')
  putWithoutPath(@Param('id') id: string) {
    parseOr400(projectIdParam, id, 'id');
    throw new BadRequestException({ statusCode: 400, error: 'Bad Request', message: 'path: empty name', field: 'path' });
  }

  @Put(':id/files/*path')
  async putFile(
    @Param('id') id: string,
    @Req() req: Request,
    @Body() body: unknown,
    @Res({ passthrough: true }) res: Response,
    @CurrentUser() user: AuthUser,
  ) {
    const projectId = parseOr400(projectIdParam, id, 'id');
    const path = validPath(filePathOf(req));
    const { content } = parseOr400(putFileBody, body ?? {});
    const written = await this.projects.putFile(user, projectId, path, content);
    res.status(written.created ? 201 : 200);
    return written;
  }

  @Delete(':id/files/*path')
  @HttpCode(204)
  async deleteFile(@Param('id') id: string, @Req() req: Request, @CurrentUser() user: AuthUser) {
    const projectId = parseOr400(projectIdParam, id, 'id');
    await this.projects.deleteFile(user, projectId, validPath(filePathOf(req)));
  }
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
