import type { ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import type { DynamicModule, Type } from '@nestjs/common';
import { METHOD_METADATA, PATH_METADATA, ROUTE_ARGS_METADATA } from '@nestjs/common/constants';
import { RouteParamtypes } from '@nestjs/common/enums/route-paramtypes.enum';
import { RequestMethod } from '@nestjs/common';
import type { z } from 'zod';
import { buildStateSchema, machineFilesReadSchema, sessionEventSchema, type Config } from '@velocity/contracts';
import { createRedis, stopProcess } from '@velocity/ops';
import { type Logger, freePort } from '@velocity/runtime';
import { testConfig, startTestApi } from '@velocity/testing';
import { AppModule } from '../app.module';
import { createSessionBody, extendSessionBody } from '../sessions/sessions.controller';
import { createProjectBody, patchFilesBody, putFileBody } from '../projects/projects.controller';
import { activityBody } from '../machines/machine-activity.controller';
import { apiErrorSchema, healthSchema, machineFilesSchema } from './schemas';
import { toOpenApi } from './zod-schema';

/**
 * The OpenAPI document and UI of a real api process (Nest's bullmq module cannot
 * load inside Jest, so the app runs as its own process): /docs-json against the
 * routes the controllers declare (read from Nest's metadata, so a route added
 * without docs fails here), the request bodies against the zod schemas that
 * validate them, the errors, the security, the SSE events; /docs is the UI.
 */

// The app module's tree, walked for its controllers without loading the ESM-only
// packages Jest cannot require. Neither registers Nest controllers: @nestjs/bullmq
// has none, and Bull Board is Express middleware (in the document by hand).
jest.mock('@nestjs/bullmq', () => {
  const stub = (name: string) => ({ module: class { static stubOf = name } });
  return {
    BullModule: { forRoot: () => stub('BullModule.forRoot'), registerQueue: () => stub('BullModule.registerQueue') },
    InjectQueue: () => () => undefined,
    getQueueToken: (name: string) => `BullQueue_${name}`,
  };
});
jest.mock('@bull-board/nestjs', () => ({
  BullBoardModule: { forRoot: () => ({ module: class BullBoardRoot {} }), forFeature: () => ({ module: class BullBoardFeature {} }) },
}));

type Json = Record<string, any>;
const HTTP_METHODS = ['get', 'put', 'post', 'delete', 'patch', 'head', 'options'] as const;
const ERROR_REF = '#/components/schemas/ApiError';

interface Route {
  method: string;
  /** The path as OpenAPI writes it: `/v1/sessions/{id}`. */
  path: string;
  controller: string;
  handler: string;
  takesBody: boolean;
}

/** Every controller of a module tree: its own, its dynamic module's, and those of everything it imports. */
function controllersOf(entry: Type | DynamicModule, seen = new Set<unknown>()): Type[] {
  const dynamic = 'module' in entry ? entry : undefined;
  const cls = dynamic ? dynamic.module : (entry as Type);
  if (seen.has(entry)) return [];
  seen.add(entry);
  const controllers: Type[] = [...(Reflect.getMetadata('controllers', cls) ?? []), ...(dynamic?.controllers ?? [])];
  const imports = [...(Reflect.getMetadata('imports', cls) ?? []), ...(dynamic?.imports ?? [])] as (Type | DynamicModule)[];
  return [...controllers, ...imports.flatMap((imported) => controllersOf(imported, seen))];
}

/** Express's `:id` and `*path` as OpenAPI's `{id}`, `{path}`. */
function openApiPath(prefix: string, path: string): string {
  const joined = `/${prefix}/${path}`.replace(/\/+/g, '/').replace(/(.)\/$/, '$1');
  if (joined.includes('{')) throw new Error(`optional route segments are not handled here: ${joined}`);
  return joined.replace(/[:*]([A-Za-z0-9_]+)/g, '{$1}');
}

/** The routes of the controllers, as Nest registers them: the class's path(s) joined with each handler's. */
function routesOf(controllers: Type[]): Route[] {
  const list = (value: unknown): string[] => ([] as unknown[]).concat(value ?? '').map(String);
  return controllers.flatMap((controller) =>
    Object.getOwnPropertyNames(controller.prototype).flatMap((handler) => {
      const fn = controller.prototype[handler];
      const method = typeof fn === 'function' ? (Reflect.getMetadata(METHOD_METADATA, fn) as RequestMethod | undefined) : undefined;
      if (method === undefined || handler === 'constructor') return [];
      const args = (Reflect.getMetadata(ROUTE_ARGS_METADATA, controller, handler) ?? {}) as Record<string, unknown>;
      const takesBody = Object.keys(args).some((key) => key.split(':')[0] === String(RouteParamtypes.BODY));
      return list(Reflect.getMetadata(PATH_METADATA, controller)).flatMap((prefix) =>
        list(Reflect.getMetadata(PATH_METADATA, fn)).map((path) => ({
          method: RequestMethod[method].toLowerCase(),
          path: openApiPath(prefix, path),
          controller: controller.name,
          handler,
          takesBody,
        })),
      );
    }),
  );
}

const silent: Logger = { debug() {}, info() {}, warn() {}, error() {}, child: () => silent } as unknown as Logger;

/** Every `$ref` of the document, with where it is. */
function refsOf(node: unknown, at = '#'): { ref: string; at: string }[] {
  if (Array.isArray(node)) return node.flatMap((item, i) => refsOf(item, `${at}/${i}`));
  if (!node || typeof node !== 'object') return [];
  return Object.entries(node).flatMap(([key, value]) =>
    key === '$ref' && typeof value === 'string' ? [{ ref: value, at }] : refsOf(value, `${at}/${key}`),
  );
}

function resolve(document: Json, ref: string): unknown {
  if (!ref.startsWith('#/')) return undefined;
  return ref
    .slice(2)
    .split('/')
    .map((part) => part.replace(/~1/g, '/').replace(/~0/g, '~'))
    .reduce<unknown>((node, part) => (node && typeof node === 'object' ? (node as Json)[part] : undefined), document);
}

const JWT_SECRET = 'openapi-spec-only-supabase-jwt-secret-0123456789';
const OPERATOR_TOKEN = randomBytes(24).toString('base64url');

describe('OpenAPI document and UI (/docs, /docs-json)', () => {
  let config: Config;
  let base: string;
  let child: ChildProcess;
  let document: Json;
  let routes: Route[];

  beforeAll(async () => {
    const port = await freePort();
    // Auth on and operator credentials set: the docs must stay public while everything else is guarded.
    config = testConfig({ API_PORT: port, LOG_LEVEL: 'info', SUPABASE_JWT_SECRET: JWT_SECRET, OPERATOR_TOKEN });
    ({ child, base } = await startTestApi(config));
    const res = await fetch(`${base}/docs-json`);
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toMatch(/^application\/json/);
    document = (await res.json()) as Json;
    routes = routesOf(controllersOf(AppModule.forRoot(config, silent)));
  }, 60_000);

  afterAll(async () => {
    if (child) await stopProcess(child);
    if (!config) return;
    const redis = createRedis(config.REDIS_URL);
    const keys = await redis.keys(`${config.QUEUE_PREFIX}:*`);
    if (keys.length > 0) await redis.del(...keys);
    redis.disconnect();
  });

  const operation = (route: Pick<Route, 'method' | 'path'>): Json => document.paths?.[route.path]?.[route.method];

  it('is an OpenAPI 3.1 document: openapi, info, paths, operations with responses, unique operation ids', () => {
    expect(document.openapi).toMatch(/^3\.1\.\d+$/);
    expect(document.info).toMatchObject({ title: expect.any(String), version: expect.any(String) });
    expect(Object.keys(document.paths).length).toBeGreaterThan(0);
    const ids: string[] = [];
    for (const [path, item] of Object.entries<Json>(document.paths)) {
      expect(path).toMatch(/^\//);
      // A path item holds operations, and may hold its own `servers` (a preview's origin).
      for (const key of Object.keys(item)) expect([...HTTP_METHODS, 'servers']).toContain(key);
      for (const method of HTTP_METHODS) {
        const op = item[method];
        if (!op) continue;
        ids.push(op.operationId);
        expect({ path, method, responses: Object.keys(op.responses ?? {}).length > 0 }).toEqual({ path, method, responses: true });
        for (const [status, response] of Object.entries<Json>(op.responses)) {
          expect(status).toMatch(/^[1-5]\d\d$/);
          expect(typeof response.description).toBe('string');
        }
        // Every {param} of the path is declared, and every declared path parameter is in the path.
        const templated = [...path.matchAll(/\{([^}]+)\}/g)].map((m) => m[1]).sort();
        const declared = (op.parameters ?? []).filter((p: Json) => p.in === 'path').map((p: Json) => p.name).sort();
        expect({ path, method, params: declared }).toEqual({ path, method, params: templated });
        // OpenAPI ignores an Authorization header parameter: the security schemes describe it.
        expect((op.parameters ?? []).filter((p: Json) => p.in === 'header' && /^authorization$/i.test(p.name))).toEqual([]);
      }
    }
    expect(ids.every((id) => typeof id === 'string' && id.length > 0)).toBe(true);
    expect(new Set(ids).size).toBe(ids.length);
  });

  it('every $ref resolves inside the document', () => {
    const refs = refsOf(document);
    expect(refs.length).toBeGreaterThan(0);
    const broken = refs.filter(({ ref }) => resolve(document, ref) === undefined);
    expect(broken).toEqual([]);
  });

  it("has every Nest route of the app (read from the controllers' decorators), and nothing else besides the three added by hand", () => {
    // The walk found the app's controllers (a sanity check on it, not the list under test).
    expect(new Set(routes.map((r) => r.controller))).toEqual(
      new Set(['RoutesController', 'ProjectsController', 'FileChangesController', 'SessionsController', 'MachineFilesController', 'MachineActivityController', 'MachineDiagnosticsController', 'HealthController', 'MetricsController']),
    );
    expect(routes.length).toBeGreaterThanOrEqual(18);
    const missing = routes.filter((route) => !operation(route)).map((r) => `${r.method.toUpperCase()} ${r.path} (${r.controller}.${r.handler})`);
    expect(missing).toEqual([]);

    const documented = Object.entries<Json>(document.paths).flatMap(([path, item]) => HTTP_METHODS.filter((m) => item[m]).map((m) => `${m.toUpperCase()} ${path}`));
    const expected = [...routes.map((r) => `${r.method.toUpperCase()} ${r.path}`), 'GET /{path}', 'GET /p/{routeId}/{path}', 'GET /admin/queues'];
    expect(documented.sort()).toEqual(expected.sort());
  });

  it('every Nest route documents its errors with the one error schema, and its success answer', () => {
    for (const route of routes) {
      const op = operation(route);
      const where = `${route.method.toUpperCase()} ${route.path}`;
      const statuses = Object.keys(op.responses).map(Number);
      const errors = statuses.filter((s) => s >= 400);
      // At least the 500 every route may answer; each error is ApiError in JSON.
      expect({ where, has500: errors.includes(500) }).toEqual({ where, has500: true });
      for (const status of errors) {
        expect({ where, status, schema: op.responses[status].content?.['application/json']?.schema }).toEqual({ where, status, schema: { $ref: ERROR_REF } });
      }
      // A success answer, except for the one route that only ever refuses (a file PUT without a path).
      if (route.handler !== 'putWithoutPath') expect({ where, success: statuses.some((s) => s >= 200 && s < 300) }).toEqual({ where, success: true });
      // A route with a uuid or other path parameter may answer 400 naming it.
      if (route.path.includes('{')) expect({ where, has400: statuses.includes(400) }).toEqual({ where, has400: true });
    }
    expect(Object.keys(operation({ method: 'put', path: '/v1/projects/{id}/files' }).responses)).toContain('400');
  });

  it('the error schema is ApiError: { statusCode, error, message, field? }, the same zod schema as the code', () => {
    const schema = document.components.schemas.ApiError;
    expect(schema).toEqual(toOpenApi(apiErrorSchema, 'output'));
    expect(schema.required.sort()).toEqual(['error', 'message', 'statusCode']);
    expect(Object.keys(schema.properties).sort()).toEqual(['error', 'field', 'message', 'statusCode']);
  });

  it('every request body is the zod schema that validates it; POST /v1/sessions requires projectId (uuid)', () => {
    const bodies: [string, string, z.ZodType][] = [
      ['post', '/v1/sessions', createSessionBody],
      ['post', '/v1/sessions/{id}/extend', extendSessionBody],
      ['post', '/v1/projects', createProjectBody],
      ['put', '/v1/projects/{id}/files/{path}', putFileBody],
      ['patch', '/v1/projects/{id}/files', patchFilesBody],
      ['post', '/v1/machines/{sessionId}/activity', activityBody],
      ['post', '/v1/machines/{sessionId}/diagnostics', buildStateSchema],
      ['post', '/v1/machines/{sessionId}/files', machineFilesReadSchema],
    ];
    // Each route that reads a @Body() is in the table (a new one must be added to it).
    expect(routes.filter((r) => r.takesBody).map((r) => `${r.method} ${r.path}`).sort()).toEqual(bodies.map(([m, p]) => `${m} ${p}`).sort());
    for (const [method, path, schema] of bodies) {
      const body = operation({ method, path }).requestBody;
      expect({ method, path, required: body?.required }).toEqual({ method, path, required: true });
      expect(body.content['application/json'].schema).toEqual(toOpenApi(schema, 'input'));
      // A body brings the body parser's answers too.
      expect(Object.keys(operation({ method, path }).responses)).toEqual(expect.arrayContaining(['400', '413', '415']));
    }
    const createSession = operation({ method: 'post', path: '/v1/sessions' }).requestBody.content['application/json'].schema;
    expect(createSession).toMatchObject({
      type: 'object',
      required: ['projectId'],
      additionalProperties: false,
      properties: { projectId: { type: 'string', format: 'uuid' }, tier: { enum: ['free', 'pro'], default: 'free' } },
    });
    // Routes without a body declare none.
    for (const route of routes.filter((r) => !r.takesBody)) expect({ route: route.path, body: operation(route).requestBody }).toEqual({ route: route.path, body: undefined });
  });

  it('documents the statuses each endpoint answers (400 naming the field, 401, 403, 404, 409, 410, 413, 415, 429 with Retry-After, 503)', () => {
    const statuses = (method: string, path: string) => Object.keys(operation({ method, path }).responses).map(Number);
    expect(statuses('post', '/v1/sessions')).toEqual(expect.arrayContaining([202, 400, 401, 403, 404, 413, 415, 429, 500, 503]));
    expect(statuses('post', '/v1/sessions/{id}/extend')).toEqual(expect.arrayContaining([200, 400, 401, 404, 409, 413, 415]));
    expect(statuses('delete', '/v1/sessions/{id}')).toEqual(expect.arrayContaining([202, 400, 401, 404, 409]));
    expect(statuses('put', '/v1/projects/{id}/files/{path}')).toEqual(expect.arrayContaining([200, 201, 400, 401, 403, 404, 413, 415, 503]));
    expect(statuses('delete', '/v1/projects/{id}/files/{path}')).toEqual(expect.arrayContaining([204, 400, 401, 403, 404, 503]));
    expect(statuses('get', '/v1/machines/{sessionId}/files')).toEqual(expect.arrayContaining([200, 400, 401, 403, 404, 410]));
    expect(statuses('get', '/v1/machines/{sessionId}/file-changes')).toEqual(expect.arrayContaining([200, 400, 401, 403, 404, 410, 503]));
    expect(statuses('post', '/v1/machines/{sessionId}/activity')).toEqual(expect.arrayContaining([200, 400, 401, 403, 404, 409, 410]));
    expect(statuses('post', '/v1/machines/{sessionId}/diagnostics')).toEqual(expect.arrayContaining([200, 400, 401, 403, 404, 410, 413, 415]));
    expect(statuses('get', '/v1/routes/{routeId}')).toEqual(expect.arrayContaining([200, 400, 401, 404, 410]));
    // The route answer names the machine, never the session behind the route.
    const route = operation({ method: 'get', path: '/v1/routes/{routeId}' }).responses[200].content['application/json'].schema;
    expect(Object.keys(route.properties).sort()).toEqual(['machineId', 'routeId']);
    expect(statuses('get', '/ready')).toEqual(expect.arrayContaining([200, 503]));
    expect(statuses('get', '/metrics')).toEqual(expect.arrayContaining([200, 401, 404]));

    const create = operation({ method: 'post', path: '/v1/sessions' }).responses;
    expect(create[400].description).toMatch(/projectId/);
    expect(create[429].headers?.['Retry-After']?.schema).toMatchObject({ type: 'integer' });
    expect(create[401].headers?.['WWW-Authenticate']).toBeDefined();
    expect(create[202].content['application/json'].schema).toMatchObject({ required: expect.arrayContaining(['sessionId', 'status', 'eventsUrl', 'sessionUrl']) });
    expect(operation({ method: 'get', path: '/v1/machines/{sessionId}/file-changes' }).responses[503].headers?.['Retry-After']).toBeDefined();
    // Path parameters are the zod schemas too: a uuid.
    const idParam = operation({ method: 'get', path: '/v1/sessions/{id}' }).parameters.find((p: Json) => p.name === 'id');
    expect(idParam).toMatchObject({ in: 'path', required: true, schema: { type: 'string', format: 'uuid' } });
  });

  it('declares the security schemes and puts them on the protected routes', () => {
    expect(document.components.securitySchemes).toEqual({
      supabaseJwt: expect.objectContaining({ type: 'http', scheme: 'bearer', bearerFormat: 'JWT' }),
      machineToken: expect.objectContaining({ type: 'http', scheme: 'bearer' }),
      operatorBasic: expect.objectContaining({ type: 'http', scheme: 'basic' }),
      operatorBearer: expect.objectContaining({ type: 'http', scheme: 'bearer' }),
    });
    const expectedSecurity = (path: string) =>
      /^\/v1\/(sessions|projects)(\/|$)/.test(path)
        ? [{ supabaseJwt: [] }]
        : /^\/v1\/(machines|routes)\//.test(path)
          ? [{ machineToken: [] }]
          : path === '/metrics' || path === '/admin/queues'
            ? [{ operatorBasic: [] }, { operatorBearer: [] }]
            : undefined;
    for (const route of [...routes, { method: 'get', path: '/admin/queues' }]) {
      const op = operation(route);
      const security = expectedSecurity(route.path);
      expect({ route: route.path, security: op.security?.length ? op.security : undefined }).toEqual({ route: route.path, security });
      if (security) expect({ route: route.path, has401: '401' in op.responses }).toEqual({ route: route.path, has401: true });
    }
    // Public: health, readiness, previews.
    expect(operation({ method: 'get', path: '/health' }).security ?? []).toEqual([]);
    expect(operation({ method: 'get', path: '/{path}' }).security).toEqual([]);
    expect(operation({ method: 'get', path: '/p/{routeId}/{path}' }).security).toEqual([]);
  });

  it('describes binary files: a file PUT takes raw bytes or JSON { content } / { base64 }; machines get { path, content, encoding? }', () => {
    const body = operation({ method: 'put', path: '/v1/projects/{id}/files/{path}' }).requestBody;
    expect(Object.keys(body.content).sort()).toEqual(['application/json', 'application/octet-stream']);
    expect(body.content['application/octet-stream'].schema).toMatchObject({ type: 'string', contentMediaType: 'application/octet-stream' });
    expect(Object.keys(body.content['application/json'].schema.properties).sort()).toEqual(['base64', 'content']);
    // The extension that carried it into the document is gone.
    expect(JSON.stringify(document.paths)).not.toContain('x-raw-body');

    const files = operation({ method: 'get', path: '/v1/machines/{sessionId}/files' }).responses[200].content['application/json'].schema;
    expect(files).toEqual(toOpenApi(machineFilesSchema, 'output'));
    expect(files.properties.files.items.properties.encoding).toMatchObject({ const: 'base64' });
    const list = operation({ method: 'get', path: '/v1/projects/{id}/files' }).responses[200].content['application/json'].schema;
    expect(list.properties.files.items.required).toEqual(expect.arrayContaining(['path', 'bytes', 'binary', 'updatedAt']));
  });

  it('describes the SSE endpoints as text/event-stream with the event schemas', () => {
    const events = operation({ method: 'get', path: '/v1/sessions/{id}/events' });
    expect(Object.keys(events.responses[200].content)).toEqual(['text/event-stream']);
    expect(events.responses[200].content['text/event-stream'].schema.$ref).toBe('#/components/schemas/SessionEvent');
    expect(events.parameters).toEqual(expect.arrayContaining([expect.objectContaining({ name: 'Last-Event-ID', in: 'header', required: false })]));
    const sessionEvent = document.components.schemas.SessionEvent;
    expect(sessionEvent).toEqual(toOpenApi(sessionEventSchema, 'output'));
    const types = (sessionEvent.anyOf ?? sessionEvent.oneOf).map((variant: Json) => variant.properties.type.const);
    expect(types.sort()).toEqual(['diagnostics', 'ended', 'ending', 'failed', 'progress', 'queued', 'ready']);

    const changes = operation({ method: 'get', path: '/v1/machines/{sessionId}/file-changes' });
    expect(Object.keys(changes.responses[200].content)).toEqual(['text/event-stream']);
    expect(changes.responses[200].content['text/event-stream'].schema.$ref).toBe('#/components/schemas/FileChangesEvent');
    expect(JSON.stringify(document.components.schemas.FileChangesEvent)).toEqual(expect.stringContaining('"cursor"'));
  });

  it('documents the preview edge on its own origin, the old links’ redirect and Bull Board, which are not Nest routes', () => {
    const preview = operation({ method: 'get', path: '/{path}' });
    expect(Object.keys(preview.responses)).toEqual(expect.arrayContaining(['200', '404', '410', '502']));
    expect(preview.responses[404].content['application/json'].schema.$ref).toBe('#/components/schemas/EdgeError');
    expect(document.paths['/{path}'].servers[0].url).toBe('{scheme}://{routeId}.{previewDomain}');
    expect(Object.keys(operation({ method: 'get', path: '/p/{routeId}/{path}' }).responses)).toEqual(['308']);
    const board = operation({ method: 'get', path: '/admin/queues' });
    expect(Object.keys(board.responses)).toEqual(expect.arrayContaining(['200', '401', '404']));
  });

  it('the answers fit the document: /health, and an ApiError with WWW-Authenticate for a request without a token', async () => {
    expect(healthSchema.safeParse(await (await fetch(`${base}/health`)).json()).success).toBe(true);
    const res = await fetch(`${base}/v1/sessions`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{}' });
    expect(res.status).toBe(401);
    expect(res.headers.get('www-authenticate')).toMatch(/^Bearer/);
    const body = await res.json();
    expect(apiErrorSchema.safeParse(body).success).toBe(true);
    expect(body).toMatchObject({ statusCode: 401, field: 'authorization' });
  });

  it('/docs is the Swagger UI, public while auth and operator credentials are on; the guards still stand', async () => {
    for (const path of ['/docs', '/docs/']) {
      const res = await fetch(`${base}${path}`);
      expect({ path, status: res.status }).toEqual({ path, status: 200 });
      expect(res.headers.get('content-type')).toMatch(/^text\/html/);
      expect(await res.text()).toMatch(/swagger-ui/i);
    }
    const init = await fetch(`${base}/docs/swagger-ui-init.js`);
    expect(init.status).toBe(200);
    expect(await init.text()).toMatch(/"openapi":\s*"3\.1\.0"/);
    const bundle = await fetch(`${base}/docs/swagger-ui-bundle.js`);
    expect(bundle.status).toBe(200);
    await bundle.arrayBuffer();
    // The docs did not open anything else.
    expect((await fetch(`${base}/metrics`)).status).toBe(401);
    expect((await fetch(`${base}/v1/sessions/${'0'.repeat(8)}-0000-4000-8000-${'0'.repeat(12)}`)).status).toBe(401);
  });
});
