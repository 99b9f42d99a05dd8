import type { INestApplication } from '@nestjs/common';
import { DocumentBuilder, SwaggerModule, type OpenAPIObject, type OperationObject, type PathItemObject, type SchemaObject } from '@nestjs/swagger';
import { sessionEventSchema } from '@velocity/contracts';
import { BULL_BOARD_ROUTE } from '../admin/admin.module';
import { RAW_BODY_EXTENSION, ref, RESPONSE_HEADERS, SCHEMAS, SECURITY } from './api-endpoint';
import { apiErrorSchema, edgeErrorSchema, fileChangesEventSchema } from './schemas';
import { toOpenApi } from './zod-schema';

/** Where the UI answers; the document is at `/docs-json`. Public. */
export const DOCS_PATH = 'docs';
export const DOCS_JSON_PATH = `${DOCS_PATH}-json`;

const DESCRIPTION = [
  'Live previews of web projects: `POST /v1/sessions`, then follow `GET /v1/sessions/{id}/events` until `ready` (with the URL) or `failed`.',
  '',
  'Generated from the code: every Nest route, its parameters and bodies from the zod schemas that validate them. ' +
    'Three paths are not Nest routes and are added by hand: a preview, `/{path}` on its own origin `{routeId}.{previewDomain}` (the edge), ' +
    'the redirect of old preview links `/p/{routeId}/{path}`, and Bull Board at `/admin/queues`.',
  '',
  '**Errors** are JSON `ApiError`: `{ statusCode, error, message, field? }`, `field` naming the input at fault. ' +
    'Any request may also be answered `431` (request line and headers over 16 kB, `field: "headers"`), `400` (bytes that are not HTTP, `field: "request"`) ' +
    'or `408`, before it reaches a route. A body on any `/v1` route must be `application/json` UTF-8 (else `415`), at most 64 kB (file writes: the file limit; else `413`); ' +
    'a file write may instead send the file\'s bytes as they are, with any other media type (`application/octet-stream`, `image/png`…).',
  '',
  '**Auth.** `/v1/sessions*` and `/v1/projects*`: a Supabase access token (`supabaseJwt`); with auth off (no SUPABASE_JWT_SECRET or SUPABASE_JWKS_URL) every request acts as one local user. ' +
    "`/v1/machines/*` and `/v1/routes/*`: a preview machine's own token (`machineToken`). `/metrics` and `/admin/queues`: operator credentials (`operatorBasic` or `operatorBearer`). " +
    'Previews, `/health`, `/ready` and these docs are public.',
  '',
  'Every answer carries `x-request-id` (the client\'s when it is a safe token, else a new UUID).',
].join('\n');

/** The document: what @nestjs/swagger finds on the controllers, plus the shared schemas, the security schemes and the two paths Nest does not serve. */
export function createOpenApiDocument(app: INestApplication): OpenAPIObject {
  const config = new DocumentBuilder()
    // 3.1: its schema objects are JSON Schema 2020-12, which is what z.toJSONSchema writes.
    .setOpenAPIVersion('3.1.0')
    .setTitle('Velocity Preview API')
    .setDescription(DESCRIPTION)
    .setVersion('0.1.0')
    .addBearerAuth(
      { type: 'http', scheme: 'bearer', bearerFormat: 'JWT', description: 'A Supabase access token (HS256 with SUPABASE_JWT_SECRET, or RS256/ES256 from SUPABASE_JWKS_URL); `sub` is the user' },
      SECURITY.user,
    )
    .addBearerAuth(
      { type: 'http', scheme: 'bearer', description: "A preview machine's short-lived token, signed for one session (given to the machine by the provisioner)" },
      SECURITY.machine,
    )
    .addBasicAuth({ type: 'http', scheme: 'basic', description: 'OPERATOR_USER / OPERATOR_PASSWORD' }, SECURITY.operatorBasic)
    .addBearerAuth({ type: 'http', scheme: 'bearer', description: 'OPERATOR_TOKEN' }, SECURITY.operatorBearer)
    .addTag('sessions', 'Previews: ask for one, follow its events, extend or stop it')
    .addTag('projects', 'Projects and their files')
    .addTag('machines', 'For preview machines only (machine token)')
    .addTag('preview', 'The preview edge (not a Nest route)')
    .addTag('operations', 'Health, readiness, metrics, Bull Board')
    .build();
  config.components = {
    ...config.components,
    schemas: {
      [SCHEMAS.error]: toOpenApi(apiErrorSchema, 'output'),
      [SCHEMAS.sessionEvent]: toOpenApi(sessionEventSchema, 'output'),
      [SCHEMAS.fileChangesEvent]: toOpenApi(fileChangesEventSchema, 'output'),
      [SCHEMAS.edgeError]: toOpenApi(edgeErrorSchema, 'output'),
    },
  };
  const document = SwaggerModule.createDocument(app, config, {
    operationIdFactory: (controller, method) => `${controller.replace(/Controller$/, '')}_${method}`,
  });
  withoutAuthorizationParams(document);
  withRawBodies(document);
  document.paths = { ...document.paths, [PREVIEW_PATH]: previewEdgePath, [LEGACY_PREVIEW_PATH]: legacyPreviewPath, [BULL_BOARD_ROUTE]: bullBoardPath };
  return document;
}

/**
 * The machine routes read `@Headers('authorization')`, which the scanner lists as
 * a header parameter; OpenAPI ignores an `Authorization` parameter (the security
 * scheme describes it), so it is left out.
 */
function withoutAuthorizationParams(document: OpenAPIObject): void {
  for (const item of Object.values(document.paths)) {
    for (const method of ['get', 'put', 'post', 'delete', 'patch', 'head', 'options'] as const) {
      const operation = item[method];
      if (!operation?.parameters) continue;
      operation.parameters = operation.parameters.filter((p) => !('in' in p && p.in === 'header' && p.name.toLowerCase() === 'authorization'));
    }
  }
}

/** Operations marked by ApiEndpoint's `body.raw`: their body may also be bytes of any media type, shown as `application/octet-stream`. */
function withRawBodies(document: OpenAPIObject): void {
  for (const item of Object.values(document.paths)) {
    for (const method of ['put', 'post', 'patch'] as const) {
      const operation = item[method] as (OperationObject & { [RAW_BODY_EXTENSION]?: { description: string } }) | undefined;
      const raw = operation?.[RAW_BODY_EXTENSION];
      if (!raw || !operation?.requestBody || !('content' in operation.requestBody)) continue;
      // OpenAPI 3.1: bytes are a string with a contentMediaType (3.0's `format: binary` is gone).
      operation.requestBody.content['application/octet-stream'] = {
        schema: { type: 'string', contentMediaType: 'application/octet-stream', description: raw.description } as SchemaObject,
      };
      delete operation[RAW_BODY_EXTENSION];
    }
  }
}

/** UI at /docs, JSON at /docs-json; both public, and served ahead of Nest's routes (they are plain Express routes). */
export function setupOpenApi(app: INestApplication): OpenAPIObject {
  const document = createOpenApiDocument(app);
  SwaggerModule.setup(DOCS_PATH, app, document, {
    jsonDocumentUrl: DOCS_JSON_PATH,
    raw: ['json'],
    customSiteTitle: 'Velocity Preview API',
  });
  return document;
}

/** A preview's path on its own origin, and the old path of previews on the api's origin. */
export const PREVIEW_PATH = '/{path}';
export const LEGACY_PREVIEW_PATH = '/p/{routeId}/{path}';

const edgeError = (description: string) => ({ description, content: { 'application/json': { schema: ref(SCHEMAS.edgeError) } } });

/** The local edge (edge/edge.ts): Express middleware, not a Nest route, so described by hand. */
const previewEdgePath: PathItemObject = {
  servers: [
    {
      url: '{scheme}://{routeId}.{previewDomain}',
      description: "Each preview's own origin: the `previewUrl` of the `ready` event",
      variables: {
        scheme: { default: 'http', enum: ['http', 'https'], description: "PUBLIC_URL's scheme" },
        routeId: { default: '00000000-0000-0000-0000-000000000000', description: 'The route id (the first label of `previewUrl`)' },
        previewDomain: { default: 'localhost:3000', description: 'PREVIEW_DOMAIN (default: localhost on the api port)' },
      },
    },
  ],
  get: {
    tags: ['preview'],
    operationId: 'Preview_get',
    summary: "A preview: the session's app, served by its machine at the root of its own origin",
    description:
      'Every method and websocket upgrades (Vite\'s HMR) to `{routeId}.{previewDomain}` go to the machine of the session with that route id, as they are; ' +
      '`path` is the whole path (may be empty, may hold `/`): nothing of the api is served on a preview origin. The id is unguessable; there is no auth. ' +
      'Answers carry `Referrer-Policy: no-referrer`. Refusals are the edge\'s own JSON (`EdgeError`), not `ApiError`.',
    security: [],
    parameters: [{ name: 'path', in: 'path', required: true, description: 'The path inside the app (`""`, `src/main.tsx`, `@vite/client`…)', schema: { type: 'string' } }],
    responses: {
      200: { description: "What the preview's app answers (HTML, JavaScript, assets…), with its own status and headers" },
      404: edgeError('No session has this route id (or the first label is not a route id): `Session not found`'),
      410: edgeError('The session has ended: `Session ended`'),
      502: edgeError("The session's machine did not answer: `Preview machine unreachable`"),
    },
  },
};

/** Old preview links on the api's origin (edge/edge.ts). */
const legacyPreviewPath: PathItemObject = {
  get: {
    tags: ['preview'],
    operationId: 'Preview_legacyRedirect',
    summary: 'An old preview link: redirected to the preview\'s own origin',
    description: 'Any method: `308` to `{scheme}://{routeId}.{previewDomain}/{path}` with the query kept. A path whose id is not a uuid is not a preview link.',
    security: [],
    parameters: [
      { name: 'routeId', in: 'path', required: true, description: 'The route id', schema: { type: 'string', format: 'uuid' } },
      { name: 'path', in: 'path', required: true, description: 'The path inside the app', schema: { type: 'string' } },
    ],
    responses: { 308: { description: "To the same path on the preview's origin", headers: { Location: { schema: { type: 'string', format: 'uri' } } } } },
  },
};

/** Bull Board (admin/admin.module.ts): mounted by @bull-board/nestjs as Express middleware, behind the operator guard. */
const bullBoardPath: PathItemObject = {
  get: {
    tags: ['operations'],
    operationId: 'BullBoard_get',
    summary: 'Bull Board: every queue of the system (sessions, cleanup, pool); retry, promote and clean jobs',
    description: 'An HTML application; its own JSON api is under `/admin/queues/api/`, behind the same guard.',
    security: [{ [SECURITY.operatorBasic]: [] }, { [SECURITY.operatorBearer]: [] }],
    responses: {
      200: { description: 'The Bull Board page', content: { 'text/html': { schema: { type: 'string' } } } },
      401: {
        description: 'Missing or wrong operator credentials',
        headers: { 'WWW-Authenticate': RESPONSE_HEADERS['WWW-Authenticate'] },
        content: { 'application/json': { schema: ref(SCHEMAS.error) } },
      },
      404: {
        description: 'Operator surfaces are off: no operator credentials are configured (the same answer as an unknown path)',
        content: { 'application/json': { schema: ref(SCHEMAS.error) } },
      },
    },
  },
};
