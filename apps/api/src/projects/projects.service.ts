import {
  BadRequestException,
  ForbiddenException,
  HttpException,
  Inject,
  Injectable,
  NotFoundException,
} from '@nestjs/common';
import { DEMO_PROJECT_ID, checkFilePath, fileByteLength, fileBytes, fileEtag, FileChangeLog, type Config, type ProjectFileContent, type TemplateType, templateFiles } from '@velocity/contracts';
import { type FilesChange, type PageCursor, type Project, type ProjectFileLimits, type ProjectStore, type WrittenFile } from '@velocity/session-store';
import { type Logger } from '@velocity/runtime';
import { CONFIG, LOGGER, SESSION_STORE } from '../tokens';
import { canReadProject, isDemoProject, type AuthUser } from '../auth/auth-user';
import { pageView } from '../common/listing';
import { ApiException } from '../common/api-exception';
import { OUTAGE_RETRY_AFTER_SECONDS, unavailable } from '../common/unavailable';
import { maxProjects, overProjectQuota } from './project-quota';

/** A project as clients see it. */
export function projectView(project: Project) {
  return { id: project.id, name: project.name, templateType: project.templateType, createdAt: project.createdAt, updatedAt: project.updatedAt };
}

const badRequest = (field: string, message: string) =>
  new BadRequestException({ statusCode: 400, error: 'Bad Request', message: `${field}: ${message}`, field });

const tooLarge = (field: string, message: string) =>
  new HttpException({ statusCode: 413, error: 'Payload Too Large', message: `${field}: ${message}`, field }, 413);

const noSuchFile = (path: string, field: string) =>
  new NotFoundException({ statusCode: 404, error: 'Not Found', message: `${field}: the project has no file ${JSON.stringify(path)}`, field });

/** 412, answered with the file's current ETag (in the body and the ETag header; null when there is no such file). */
const preconditionFailed = (path: string, etag: string | null, field: string) =>
  new ApiException(
    {
      statusCode: 412,
      error: 'Precondition Failed',
      message: `${field}: ${etag ? `${JSON.stringify(path)} has changed; its ETag is now ${quoteEtag(etag)}` : `the project has no file ${JSON.stringify(path)}`}`,
      field,
      path,
      etag: etag ? quoteEtag(etag) : null,
    },
    etag ? { etag: quoteEtag(etag) } : {},
  );

/** Strong ETags: the hex SHA-256 of the bytes, quoted (RFC 9110 8.8.3). */
export const quoteEtag = (hex: string) => `"${hex}"`;
/** An If-Match value as the store compares it: `*`, or the hex inside the quotes (a weak `W/` tag never matches: RFC 9110 13.1.1). */
export const unquoteEtag = (tag: string) => (tag.trim() === '*' ? '*' : (/^"([0-9a-f]{64})"$/.exec(tag.trim())?.[1] ?? 'no-such-etag'));

/** Where each kind of failure points in a request: the single-file routes' fields, or a batch's entries. */
interface FieldNames {
  content: (path: string) => string;
  path: (path: string) => string;
  ifMatch: (path: string) => string;
  newPath: string;
  project: string;
}

const SINGLE_FILE_FIELDS: FieldNames = { content: () => 'content', path: () => 'path', ifMatch: () => 'If-Match', newPath: 'path', project: 'content' };

function batchFields(written: string[], removed: string[]): FieldNames {
  const writeIndex = (path: string) => written.indexOf(path);
  const entry = (path: string) => (writeIndex(path) >= 0 ? `write.${writeIndex(path)}` : `delete.${removed.indexOf(path)}`);
  return {
    content: (path) => `${entry(path)}.content`,
    path: (path) => entry(path),
    ifMatch: (path) => `${entry(path)}.ifMatch`,
    newPath: 'write',
    project: 'write',
  };
}

/** A single-file request's If-Match header as the store's expectation. */
function expectation(path: string, ifMatch: string | undefined): Pick<FilesChange, 'expected'> {
  return ifMatch === undefined ? {} : { expected: { [path]: unquoteEtag(ifMatch) } };
}

/** A PATCH of a project's files, as the controller parsed it. */
export interface FilesBatch {
  write: { path: string; file: ProjectFileContent; ifMatch?: string }[];
  delete: { path: string; ifMatch?: string }[];
}

const projectNotFound = (projectId: string) =>
  new NotFoundException({ statusCode: 404, error: 'Not Found', message: `Project ${projectId} does not exist`, field: 'id' });

/**
 * Project use cases: create and read projects, write and remove single files.
 * Every write commits in the database first, then a notice of it (paths, ETags,
 * sizes) goes to the project's file change stream, from which its running
 * previews learn of it and read the files (through the api).
 */
@Injectable()
export class ProjectsService {
  constructor(
    @Inject(CONFIG) private readonly config: Config,
    @Inject(SESSION_STORE) private readonly store: ProjectStore,
    @Inject(LOGGER) private readonly logger: Logger,
    private readonly changes: FileChangeLog,
  ) {}

  private get limits(): ProjectFileLimits {
    return {
      maxFiles: this.config.MAX_PROJECT_FILES,
      maxFileBytes: this.config.MAX_FILE_BYTES,
      maxProjectBytes: this.config.MAX_PROJECT_BYTES,
    };
  }

  /** A new project holding its template's files (its first preview would seed them, should this fail after the project is made). */
  async create(user: AuthUser, name: string, templateType: TemplateType) {
    // Count and insert in one statement under the owner's lock: concurrent creates never pass the limit.
    const created = await this.store.createProjectWithinQuota({ name, templateType, ownerId: user.id }, maxProjects(this.config, user));
    if (created.outcome === 'over-quota') throw overProjectQuota(user, created.count, created.limit);
    const { project } = created;
    await this.store.seedProjectFiles(project.id, templateFiles(templateType));
    return projectView(project);
  }

  /** The user's own projects (with auth off, every project), most recently changed first; the demo project is not listed. */
  async list(user: AuthUser, query: { limit: number; cursor?: PageCursor }) {
    const page = await this.store.listProjects({ ownerId: user.local ? null : user.id, except: DEMO_PROJECT_ID, limit: query.limit, before: query.cursor });
    return pageView('projects', page, projectView);
  }

  async get(user: AuthUser, projectId: string) {
    return projectView(await this.readable(user, projectId));
  }

  async listFiles(user: AuthUser, projectId: string) {
    await this.readable(user, projectId);
    return { files: await this.store.listProjectFilePaths(projectId) };
  }

  /** The project when this user may read it: their own, or the demo; another user's is answered as unknown (404). */
  private async readable(user: AuthUser, projectId: string): Promise<Project> {
    const project = await this.store.getProject(projectId);
    if (!project || !canReadProject(user, project)) throw projectNotFound(projectId);
    return project;
  }

  /** The project when this user may change it: 404 as above; 403 naming `id` for the demo project, which is read-only. */
  private async writable(user: AuthUser, projectId: string): Promise<Project> {
    const project = await this.readable(user, projectId);
    if (isDemoProject(project)) {
      throw new ForbiddenException({
        statusCode: 403, error: 'Forbidden', field: 'id',
        message: `Project ${projectId} is the demo project: anyone may preview it, no one may change its files; create a project of your own (POST /v1/projects)`,
      });
    }
    return project;
  }

  /** One file's bytes and ETag; 404 naming `path` when the project has no such file. */
  async readFile(user: AuthUser, projectId: string, rawPath: string) {
    const path = validPath(rawPath);
    await this.readable(user, projectId);
    const [file] = await this.store.listProjectFiles(projectId, [path]);
    if (!file) throw noSuchFile(path, 'path');
    return { path, bytes: fileBytes(file), etag: fileEtag(file) };
  }

  /**
   * Upserts one file, text or bytes (its content checked by the body schema); with
   * `ifMatch`, only while the file's ETag is that (or, `*`, while it exists).
   */
  async putFile(user: AuthUser, projectId: string, rawPath: string, data: ProjectFileContent, ifMatch?: string) {
    const path = validPath(rawPath);
    const file = { ...data, path };
    const applied = await this.apply(user, projectId, { write: [file], delete: [], ...expectation(path, ifMatch) }, SINGLE_FILE_FIELDS);
    const [written] = applied.written;
    await this.publish(projectId, { type: 'put', projectId, ...writtenNotice(written), at: Date.now() });
    return { path, bytes: written.fileBytes, created: written.created, fileCount: applied.fileCount, projectBytes: applied.projectBytes, etag: quoteEtag(written.etag) };
  }

  async deleteFile(user: AuthUser, projectId: string, rawPath: string, ifMatch?: string) {
    const path = validPath(rawPath);
    await this.apply(user, projectId, { write: [], delete: [path], ...expectation(path, ifMatch) }, SINGLE_FILE_FIELDS);
    await this.publish(projectId, { type: 'delete', projectId, path, at: Date.now() });
  }

  /**
   * Writes and removes files together, all or nothing; the project's running
   * previews get the change as one. Each entry may carry `ifMatch`.
   */
  async applyFiles(user: AuthUser, projectId: string, batch: FilesBatch) {
    const write = batch.write.map((entry, i) => ({ ...entry.file, path: validPath(entry.path, `write.${i}.path`) }));
    const remove = batch.delete.map((entry, i) => validPath(entry.path, `delete.${i}`));
    const entries = [
      ...batch.write.map((entry, i) => ({ path: write[i].path, field: `write.${i}.path`, ifMatch: entry.ifMatch })),
      ...batch.delete.map((entry, i) => ({ path: remove[i], field: `delete.${i}`, ifMatch: entry.ifMatch })),
    ];
    const seen = new Set<string>();
    for (const { path, field } of entries) {
      if (seen.has(path)) throw badRequest(field, `${JSON.stringify(path)} appears more than once in the change`);
      seen.add(path);
    }
    const expected = Object.fromEntries(entries.filter((e) => e.ifMatch !== undefined).map((e) => [e.path, unquoteEtag(e.ifMatch!)]));
    const fields = batchFields(write.map((f) => f.path), remove);
    const applied = await this.apply(user, projectId, { write, delete: remove, expected }, fields);
    await this.publish(projectId, { type: 'batch', projectId, write: applied.written.map(writtenNotice), delete: remove, at: Date.now() });
    return {
      written: applied.written.map((f) => ({ path: f.path, bytes: f.fileBytes, created: f.created, etag: quoteEtag(f.etag) })),
      deleted: applied.deleted,
      fileCount: applied.fileCount,
      projectBytes: applied.projectBytes,
    };
  }

  /** The change applied in the store, or the HTTP error that says why not (naming the field through `fields`). */
  private async apply(user: AuthUser, projectId: string, change: FilesChange, fields: FieldNames) {
    for (const file of change.write) {
      const bytes = fileByteLength(file);
      if (bytes > this.config.MAX_FILE_BYTES) throw tooLarge(fields.content(file.path), `${bytes} bytes is more than the ${this.config.MAX_FILE_BYTES} bytes a file may have (MAX_FILE_BYTES)`);
    }
    await this.writable(user, projectId);
    const result = await this.store.applyProjectFiles(projectId, change, this.limits);
    switch (result.outcome) {
      case 'applied':
        return result;
      case 'no-project':
        throw projectNotFound(projectId);
      case 'file-too-large':
        throw tooLarge(fields.content(result.path), `${result.fileBytes} bytes is more than the ${this.config.MAX_FILE_BYTES} bytes a file may have (MAX_FILE_BYTES)`);
      case 'project-too-large':
        throw tooLarge(fields.project, `the project would hold ${result.projectBytes} bytes, more than its limit of ${this.config.MAX_PROJECT_BYTES} bytes (MAX_PROJECT_BYTES)`);
      case 'too-many-files':
        throw badRequest(fields.newPath, `the project already has ${result.fileCount} files, its limit (MAX_PROJECT_FILES); a new path cannot be added`);
      case 'no-file':
        throw noSuchFile(result.path, fields.path(result.path));
      case 'precondition-failed':
        throw preconditionFailed(result.path, result.etag, fields.ifMatch(result.path));
    }
  }

  /** After the commit: tell the running previews. A failure here answers 503 so the client retries (the write is idempotent). */
  private async publish(projectId: string, change: Parameters<FileChangeLog['append']>[0]) {
    try {
      await this.changes.append(change);
    } catch (err) {
      this.logger.error('file change saved but not published', { projectId, type: change.type, err: err as Error });
      // Saved, so the answer says so: the same request again (once Redis answers) tells the previews.
      throw unavailable(
        'redis',
        `The file was saved, but running previews could not be told (Redis did not answer); send the same request again in ${OUTAGE_RETRY_AFTER_SECONDS} s`,
        { saved: true },
      );
    }
  }
}

/** What the file-change stream says of a written file: no content (machines read it from the api), so the stream stays small. */
const writtenNotice = (file: WrittenFile) => ({ path: file.path, etag: file.etag, bytes: file.fileBytes });

/** The normal form of a file path from a request; 400 naming `path` when the shared rules refuse it. */
export function validPath(raw: string, field = 'path'): string {
  const checked = checkFilePath(raw);
  if (checked.reason !== null) throw badRequest(field, checked.reason);
  return checked.path;
}
