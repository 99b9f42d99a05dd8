import {
  BadRequestException,
  ForbiddenException,
  HttpException,
  Inject,
  Injectable,
  NotFoundException,
  ServiceUnavailableException,
} from '@nestjs/common';
import {
  DEMO_PROJECT_ID,
  checkFilePath,
  fileByteLength,
  FileChangeLog,
  type Config,
  type Logger,
  type PageCursor,
  type Project,
  type ProjectFileContent,
  type ProjectFileLimits,
  type SessionStore,
  type TemplateType,
} from '@velocity/shared';
import { CONFIG, LOGGER, SESSION_STORE } from '../tokens';
import { canReadProject, isDemoProject, type AuthUser } from '../auth/auth-user';
import { pageView } from '../common/listing';

/** A project as clients see it. */
export function projectView(project: Project) {
  return { id: project.id, name: project.name, templateType: project.templateType, createdAt: project.createdAt, updatedAt: project.updatedAt };
}

const badRequest = (field: string, message: string) =>
  new BadRequestException({ statusCode: 400, error: 'Bad Request', message: `${field}: ${message}`, field });

const tooLarge = (message: string) =>
  new HttpException({ statusCode: 413, error: 'Payload Too Large', message: `content: ${message}`, field: 'content' }, 413);

const projectNotFound = (projectId: string) =>
  new NotFoundException({ statusCode: 404, error: 'Not Found', message: `Project ${projectId} does not exist`, field: 'id' });

/**
 * Project use cases: create and read projects, write and remove single files.
 * Every write commits in the database first, then goes to the project's file
 * change stream, from which its running previews (through the api) apply it.
 */
@Injectable()
export class ProjectsService {
  constructor(
    @Inject(CONFIG) private readonly config: Config,
    @Inject(SESSION_STORE) private readonly store: SessionStore,
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

  /** A new project with no files; its first preview seeds it from its template (unless files were put before). */
  async create(user: AuthUser, name: string, templateType: TemplateType) {
    return projectView(await this.store.createProject({ name, templateType, ownerId: user.id }));
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

  /**
   * Upserts one file, text or bytes (its content checked by the body schema): the
   * path by the shared rules (400 naming `path`), the size in real bytes by the
   * limits (413 naming `content` for sizes, 400 `path` for too many files), all
   * checked again in the database under the project's lock.
   */
  async putFile(user: AuthUser, projectId: string, rawPath: string, data: ProjectFileContent) {
    const path = validPath(rawPath);
    const bytes = fileByteLength(data);
    if (bytes > this.config.MAX_FILE_BYTES) {
      throw tooLarge(`${bytes} bytes is more than the ${this.config.MAX_FILE_BYTES} bytes a file may have (MAX_FILE_BYTES)`);
    }
    await this.writable(user, projectId);
    const file = { ...data, path };
    const result = await this.store.putProjectFile(projectId, file, this.limits);
    switch (result.outcome) {
      case 'no-project':
        throw projectNotFound(projectId);
      case 'file-too-large':
        throw tooLarge(`${result.fileBytes} bytes is more than the ${this.config.MAX_FILE_BYTES} bytes a file may have (MAX_FILE_BYTES)`);
      case 'project-too-large':
        throw tooLarge(
          `the project would hold ${result.projectBytes} bytes, more than its limit of ${this.config.MAX_PROJECT_BYTES} bytes (MAX_PROJECT_BYTES)`,
        );
      case 'too-many-files':
        throw badRequest('path', `the project already has ${result.fileCount} files, its limit (MAX_PROJECT_FILES); a new path cannot be added`);
    }
    await this.publish(projectId, { type: 'put', projectId, ...file, at: Date.now() });
    return { path, bytes: result.fileBytes, created: result.outcome === 'created', fileCount: result.fileCount, projectBytes: result.projectBytes };
  }

  async deleteFile(user: AuthUser, projectId: string, rawPath: string) {
    const path = validPath(rawPath);
    await this.writable(user, projectId);
    if (!(await this.store.deleteProjectFile(projectId, path))) {
      throw new NotFoundException({ statusCode: 404, error: 'Not Found', message: `path: the project has no file ${JSON.stringify(path)}`, field: 'path' });
    }
    await this.publish(projectId, { type: 'delete', projectId, path, at: Date.now() });
  }

  /** After the commit: tell the running previews. A failure here answers 503 so the client retries (the write is idempotent). */
  private async publish(projectId: string, change: Parameters<FileChangeLog['append']>[0]) {
    try {
      await this.changes.append(change);
    } catch (err) {
      this.logger.error('file change saved but not published', { projectId, path: change.path, err: err as Error });
      throw new ServiceUnavailableException({
        statusCode: 503,
        error: 'Service Unavailable',
        message: 'The file was saved, but running previews could not be told; send the same request again',
      });
    }
  }
}

/** The normal form of a file path from a request; 400 naming `path` when the shared rules refuse it. */
export function validPath(raw: string): string {
  const checked = checkFilePath(raw);
  if (checked.reason !== null) throw badRequest('path', checked.reason);
  return checked.path;
}
