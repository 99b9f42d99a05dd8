import { z } from 'zod';
import { endedEventSchema, fileChangeSchema, projectFileSchema, resyncEventSchema, sessionStatusSchema, tierSchema, buildStateSchema, buildStatusSchema } from '@velocity/contracts';
import type { HealthController } from '../health.controller';
import type { MachineActivityController } from '../machines/machine-activity.controller';
import type { MachineDiagnosticsController } from '../machines/machine-diagnostics.controller';
import type { MachineFilesController } from '../machines/machine-files.controller';
import type { RoutesController } from '../edge/routes.controller';
import type { ProjectsService } from '../projects/projects.service';
import type { SessionsService } from '../sessions/sessions.service';

/**
 * The schemas of what the api answers, for the OpenAPI document. Requests are
 * described by the zod schemas that validate them (exported by the controllers);
 * answers have no validator, so they are written here, and the compile-time
 * checks at the end keep each one equal to the type the code returns.
 */

const uuid = z.uuid();
const timestamp = z.string().describe('ISO 8601 timestamp');

/** Every error: `{ statusCode, error, message, field? }` (common/error.filter.ts), sometimes with more fields. */
export const apiErrorSchema = z
  .looseObject({
    statusCode: z.number().int().min(400).max(599).describe('The HTTP status, repeated'),
    error: z.string().describe('The status text: "Bad Request", "Not Found"…'),
    message: z.string().describe('What went wrong, for a person; starts with the field when there is one (`projectId: Invalid UUID`)'),
    field: z
      .string()
      .optional()
      .describe('The input at fault: a body field (`projectId`, `tier`, `seconds`, `content`), `id`, `sessionId`, `path`, `query.<name>`, `authorization`, `content-type`, `body`, `Last-Event-ID`…'),
  })
  .describe(
    'The error body of every api route. Some errors add fields: `sessionId`, `status` (409), `limit`, `max`, `live`, `retryAfterSeconds` (429), `maxDurationSeconds`, `maxUntil`, `expiresAt` (409 on extend), `checks`, `failing` (503 from /ready).',
  );

/** The preview edge's own refusals (edge/edge.ts): not the api's error shape. */
export const edgeErrorSchema = z.object({
  error: z.enum(['Session not found', 'Session ended', 'Preview machine unreachable']),
  routeId: z.string().optional().describe("The route id from the preview's host (absent when the host names none)"),
});

export const createdSessionSchema = z.object({
  sessionId: uuid,
  status: z.literal('queued'),
  eventsUrl: z.string().describe('`/v1/sessions/<id>/events`: the Server-Sent Events of the session'),
  sessionUrl: z.string().describe('`/v1/sessions/<id>`'),
});

export const sessionViewSchema = z.object({
  id: uuid,
  projectId: uuid,
  status: sessionStatusSchema,
  tier: tierSchema,
  previewUrl: z.string().nullable().describe('Set once the session is active'),
  expiresAt: timestamp.nullable(),
  endedAt: timestamp.nullable(),
  errorMessage: z.string().nullable(),
  errorStep: z.string().nullable(),
  createdAt: timestamp,
  updatedAt: timestamp,
  build: buildStateSchema
    .nullable()
    .describe(
      "The preview's build state, as its events last said it (`ready`, then each `diagnostics` event): `errors` with every diagnostic, or `ok`; null until known",
    ),
});

export const sessionListSchema = z.object({
  sessions: z.array(sessionViewSchema.extend({ build: sessionViewSchema.shape.build.describe('Not read for a listing (null): GET the session for it') })),
  nextCursor: z.string().nullable().describe('Pass as `cursor` for the next page; null on the last page'),
});

export const extendedSessionSchema = z.object({
  sessionId: uuid,
  status: sessionStatusSchema,
  expiresAt: timestamp,
  maxUntil: timestamp.describe("The latest `expiresAt` the session's tier allows"),
});

export const stoppedSessionSchema = z.object({
  sessionId: uuid,
  status: sessionStatusSchema,
  stop: z.enum(['cancelled', 'ending']).describe('`cancelled`: it was still provisioning (it fails as cancelled); `ending`: it was active and is being ended'),
});

export const projectViewSchema = z.object({ id: uuid, name: z.string(), templateType: z.string(), createdAt: timestamp, updatedAt: timestamp.describe('Its last change: created, or a file written or removed') });

const nextCursor = z.string().nullable().describe('Pass as `cursor` for the next page; null on the last page');
export const projectListSchema = z.object({ projects: z.array(projectViewSchema), nextCursor });

const fileBytes = z.number().int().nonnegative().describe("The file's size in bytes: UTF-8 for text, the bytes themselves for a binary file");

export const projectFileListSchema = z.object({
  files: z.array(
    z.object({
      path: z.string(),
      bytes: fileBytes,
      binary: z.boolean().describe('Stored as bytes (written raw or as base64), not as text'),
      updatedAt: timestamp,
    }),
  ),
});

export const writtenFileSchema = z.object({
  path: z.string().describe('The normal form of the path'),
  bytes: fileBytes,
  created: z.boolean().describe('true (201) when the file is new, false (200) when it was replaced'),
  fileCount: z.number().int().nonnegative().describe("The project's number of files after the write"),
  projectBytes: z.number().int().nonnegative().describe("The project's total size after the write"),
  etag: z.string().describe('The strong ETag of the file as written (also the `ETag` header): send it as `If-Match` with the next write'),
});

export const appliedFilesSchema = z.object({
  written: z.array(writtenFileSchema.pick({ path: true, bytes: true, created: true, etag: true })).describe('Each file written, by path'),
  deleted: z.array(z.string()).describe('Each path removed'),
  fileCount: z.number().int().nonnegative().describe("The project's number of files after the change"),
  projectBytes: z.number().int().nonnegative().describe("The project's total size after the change"),
});

/** The files as a machine gets them: text `{ path, content }`, bytes `{ path, content: <base64>, encoding: "base64" }`. */
export const machineFilesSchema = z.object({ files: z.array(projectFileSchema) });

export const activityRecordedSchema = z.object({ sessionId: uuid, lastActivityAt: timestamp });

export const diagnosticsRecordedSchema = z.object({
  sessionId: uuid,
  state: buildStatusSchema,
  stored: z.boolean().describe('false when the state said nothing new (no event was added)'),
});

export const machineRouteSchema = z.object({
  routeId: uuid.describe('The id asked for (the id in the preview URL)'),
  machineId: z.string().describe('The machine that serves the session (for `fly-replay: instance=<machineId>`)'),
});

export const healthSchema = z.object({
  status: z.literal('ok'),
  app: z.literal('api'),
  pid: z.number().int(),
  uptimeSeconds: z.number().int().nonnegative(),
});

const readinessChecks = {
  status: z.enum(['ready', 'not ready']),
  checks: z.record(z.string(), z.string()).describe('`ok`, or why the check failed, for `redis` and `postgres`'),
  failing: z.array(z.string()).describe('The names of the failed checks'),
};
export const readySchema = z.object({ app: z.literal('api'), ...readinessChecks });

/** The `data` of each frame of `GET /v1/machines/:sessionId/file-changes`, by event name. */
export const fileChangesEventSchema = z
  .union([fileChangeSchema, resyncEventSchema, endedEventSchema])
  .describe(
    '`event: resync` `{ cursor }`: load the whole file list (GET /v1/machines/:sessionId/files), then apply what follows; ' +
      '`event: put` / `event: delete` / `event: batch`: one FileChange, its stream id as the frame id (resume with Last-Event-ID); a notice without content: ' +
      'a written file is `{ path, etag, bytes }` (etag: the hex SHA-256 of its bytes), read with POST /v1/machines/:sessionId/files `{ paths }`; ' +
      '`event: ended` `{ reason }`: the session is over; the stream closes and must not be reopened.',
  );

// --- Compile-time checks: each schema describes exactly what the code returns. ---

type Same<A, B> = [A] extends [B] ? ([B] extends [A] ? true : false) : false;
/** What the code returns fits the schema, and the schema names exactly its fields (none undocumented, none extra). */
type Describes<Schema, Code> = [Code] extends [Schema] ? Same<keyof Schema, keyof Code> : false;
type Returned<F extends (...args: never[]) => unknown> = Awaited<ReturnType<F>>;
/** Compiles only when every entry is `true`. */
type AllTrue<T extends true[]> = T;

export type ResponseSchemasMatchTheCode = AllTrue<[
  Describes<z.output<typeof createdSessionSchema>, Returned<SessionsService['create']>['view']>,
  Describes<z.output<typeof sessionViewSchema>, Returned<SessionsService['get']>>,
  Describes<z.output<typeof extendedSessionSchema>, Returned<SessionsService['extend']>>,
  Describes<z.output<typeof stoppedSessionSchema>, Returned<SessionsService['stop']>>,
  Describes<z.output<typeof projectViewSchema>, Returned<ProjectsService['get']>>,
  Describes<z.output<typeof projectListSchema>, Returned<ProjectsService['list']>>,
  Describes<z.output<typeof sessionListSchema>, Returned<SessionsService['list']>>,
  Describes<z.output<typeof projectViewSchema>, Returned<ProjectsService['create']>>,
  Describes<z.output<typeof projectFileListSchema>, Returned<ProjectsService['listFiles']>>,
  Describes<z.output<typeof writtenFileSchema>, Returned<ProjectsService['putFile']>>,
  Describes<z.output<typeof appliedFilesSchema>, Returned<ProjectsService['applyFiles']>>,
  Describes<z.output<typeof machineFilesSchema>, Returned<MachineFilesController['files']>>,
  Describes<z.output<typeof machineFilesSchema>, Returned<MachineFilesController['read']>>,
  Describes<z.output<typeof activityRecordedSchema>, Returned<MachineActivityController['activity']>>,
  Describes<z.output<typeof diagnosticsRecordedSchema>, Returned<MachineDiagnosticsController['report']>>,
  Describes<z.output<typeof machineRouteSchema>, Returned<RoutesController['route']>>,
  // `status` and `app` are plain strings in the code ('ok', 'api').
  Describes<Omit<z.output<typeof healthSchema>, 'status' | 'app'>, Omit<ReturnType<HealthController['health']>, 'status' | 'app'>>,
  Describes<Omit<z.output<typeof readySchema>, 'app'>, Omit<Returned<HealthController['ready']>, 'app'>>,
]>;
