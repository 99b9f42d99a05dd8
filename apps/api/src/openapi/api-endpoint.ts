import { applyDecorators, SetMetadata } from '@nestjs/common';
import {
  ApiBasicAuth,
  ApiBearerAuth,
  ApiBody,
  ApiExtension,
  ApiHeader,
  ApiOperation,
  ApiParam,
  ApiQuery,
  ApiResponse,
  type HeadersObject,
  type ReferenceObject,
  type SchemaObject,
} from '@nestjs/swagger';
import type { z } from 'zod';
import { toOpenApi } from './zod-schema';

/** Names of the document's security schemes (declared in openapi/document.ts). */
export const SECURITY = {
  /** A Supabase access token: /v1/sessions*, /v1/projects*. */
  user: 'supabaseJwt',
  /** A preview machine's own short-lived token: /v1/machines/*, /v1/routes/*. */
  machine: 'machineToken',
  /** Operator credentials (either one): /metrics, /admin/queues. */
  operatorBasic: 'operatorBasic',
  operatorBearer: 'operatorBearer',
} as const;

/** Metadata: the query parameters a route accepts (the AuthGuard refuses any other). */
export const ACCEPTED_QUERY = 'velocity:accepted-query';

/** Names of the document's shared schemas (components.schemas). */
export const SCHEMAS = {
  error: 'ApiError',
  sessionEvent: 'SessionEvent',
  fileChangesEvent: 'FileChangesEvent',
  edgeError: 'EdgeError',
} as const;

export const ref = (name: (typeof SCHEMAS)[keyof typeof SCHEMAS]): ReferenceObject => ({ $ref: `#/components/schemas/${name}` });

type ResponseHeader = 'Retry-After' | 'WWW-Authenticate';

export const RESPONSE_HEADERS: Record<ResponseHeader, HeadersObject[string]> = {
  'Retry-After': { description: 'Seconds to wait before asking again', schema: { type: 'integer', minimum: 1 } },
  'WWW-Authenticate': { description: 'The authentication challenge (RFC 9110)', schema: { type: 'string' } },
};

/** One error status of an endpoint: what causes it, and the headers it carries. */
export type ErrorDoc = string | { description: string; headers?: ResponseHeader[] };

type Auth = 'user' | 'machine' | 'operator' | 'public';

interface SuccessDoc {
  description: string;
  /** A JSON body described by a zod schema (converted as output). */
  schema?: z.ZodType;
  /** Any other body (text, Server-Sent Events), by media type. */
  content?: Record<string, { schema: SchemaObject | ReferenceObject }>;
}

export interface EndpointDoc {
  summary: string;
  description?: string;
  auth: Auth;
  /** Path parameters, each by the zod schema that validates it (or, for one checked by other code, a schema object). */
  params?: Record<string, { schema: z.ZodType | SchemaObject; description?: string }>;
  /** Query parameters, each by the zod schema that validates it: the only ones the route accepts (any other is a 400). */
  query?: Record<string, { schema: z.ZodType; description: string }>;
  /** Request headers the route reads (besides Authorization, which the security scheme covers). */
  headers?: { name: string; schema: z.ZodType; description: string }[];
  /**
   * The JSON body, by the zod schema that validates it; brings 400 (bad JSON), 413 and 415.
   * `raw`: the route also takes any other media type as raw bytes (described by this text).
   */
  body?: { schema: z.ZodType; description?: string; maxSize?: string; raw?: string };
  /** Success answers by status. */
  ok: Record<number, SuccessDoc>;
  /** Error answers by status, besides those its auth and body bring (and 500, which every route may answer). */
  errors?: Record<number, ErrorDoc>;
}

/** The errors every route of a kind of auth may answer, before any of its own. */
const AUTH_ERRORS: Record<Auth, Record<number, ErrorDoc>> = {
  user: {
    400: '`query.<name>`: a query parameter the route does not take',
    401: {
      description:
        '`authorization`: no bearer token, or one that is not a valid Supabase access token (bad signature, expired, wrong `aud` or `role`, an algorithm other than HS256/RS256/ES256)',
      headers: ['WWW-Authenticate'],
    },
    503: { description: "`authorization`: the Supabase JWKS (SUPABASE_JWKS_URL) could not be read to check the token's signature", headers: ['Retry-After'] },
  },
  machine: { 401: '`authorization`: no valid machine token (`Authorization: Bearer <machine token>`)' },
  operator: {
    401: { description: 'Missing or wrong operator credentials', headers: ['WWW-Authenticate'] },
    404: 'Operator surfaces are off: no OPERATOR_USER/OPERATOR_PASSWORD or OPERATOR_TOKEN is configured (the same answer as an unknown path)',
  },
  public: {},
};

/** Marks an operation whose body may also be raw bytes of any media type. */
export const RAW_BODY_EXTENSION = 'x-raw-body';

const bodyErrors = (maxSize: string, raw: boolean): Record<number, ErrorDoc> => ({
  400: '`body`: not valid JSON',
  413: `\`body\`: larger than ${maxSize}`,
  415: raw ? '`content-type`: a JSON body whose charset is not UTF-8' : '`content-type`: the body is not `application/json` (UTF-8)',
});

const SERVER_ERROR: Record<number, ErrorDoc> = { 500: 'An unexpected error (logged; the answer holds no internals)' };

const isZod = (schema: z.ZodType | SchemaObject): schema is z.ZodType => '_zod' in schema;

/** Several causes of one status: one response whose description lists them all. */
function mergeErrors(...sources: Record<number, ErrorDoc>[]): Map<number, { description: string[]; headers: Set<ResponseHeader> }> {
  const merged = new Map<number, { description: string[]; headers: Set<ResponseHeader> }>();
  for (const source of sources) {
    for (const [status, doc] of Object.entries(source)) {
      const entry = merged.get(Number(status)) ?? { description: [], headers: new Set<ResponseHeader>() };
      const { description, headers = [] } = typeof doc === 'string' ? { description: doc } : doc;
      entry.description.push(description);
      headers.forEach((h) => entry.headers.add(h));
      merged.set(Number(status), entry);
    }
  }
  return merged;
}

/**
 * The OpenAPI description of one route, in one place: summary, security, path
 * parameters and headers and body (from the zod schemas that validate them),
 * success answers, and every error status it can answer, each as the shared
 * `ApiError` schema: those of its auth, of its body, its own, and 500.
 */
export function ApiEndpoint(doc: EndpointDoc): MethodDecorator {
  const decorators: MethodDecorator[] = [ApiOperation({ summary: doc.summary, description: doc.description })];

  if (doc.auth === 'user') decorators.push(ApiBearerAuth(SECURITY.user));
  if (doc.auth === 'machine') decorators.push(ApiBearerAuth(SECURITY.machine));
  // Two entries: either scheme will do.
  if (doc.auth === 'operator') decorators.push(ApiBasicAuth(SECURITY.operatorBasic), ApiBearerAuth(SECURITY.operatorBearer));

  for (const [name, param] of Object.entries(doc.params ?? {})) {
    const schema = isZod(param.schema) ? toOpenApi(param.schema) : param.schema;
    decorators.push(ApiParam({ name, required: true, description: param.description, schema }));
  }
  for (const [name, param] of Object.entries(doc.query ?? {})) {
    decorators.push(ApiQuery({ name, required: false, description: param.description, schema: toOpenApi(param.schema, 'input') }));
  }
  decorators.push(SetMetadata(ACCEPTED_QUERY, Object.keys(doc.query ?? {})));
  for (const header of doc.headers ?? []) {
    decorators.push(ApiHeader({ name: header.name, required: false, description: header.description, schema: toOpenApi(header.schema) }));
  }
  if (doc.body) decorators.push(ApiBody({ required: true, description: doc.body.description, schema: toOpenApi(doc.body.schema, 'input') }));
  // ApiBody gives one schema to every media type: the raw one is added to the document by withRawBodies (document.ts).
  if (doc.body?.raw) decorators.push(ApiExtension(RAW_BODY_EXTENSION, { description: doc.body.raw }));

  for (const [status, ok] of Object.entries(doc.ok)) {
    decorators.push(
      ApiResponse({
        status: Number(status),
        description: ok.description,
        ...(ok.schema || ok.content
          ? { content: { ...(ok.schema ? { 'application/json': { schema: toOpenApi(ok.schema, 'output') } } : {}), ...ok.content } }
          : {}),
      }),
    );
  }

  const errors = mergeErrors(AUTH_ERRORS[doc.auth], doc.body ? bodyErrors(doc.body.maxSize ?? '64 kB', Boolean(doc.body.raw)) : {}, doc.errors ?? {}, SERVER_ERROR);
  for (const [status, { description, headers }] of [...errors].sort(([a], [b]) => a - b)) {
    decorators.push(
      ApiResponse({
        status,
        description: description.length === 1 ? description[0] : description.map((d) => `- ${d}`).join('\n'),
        content: { 'application/json': { schema: ref(SCHEMAS.error) } },
        ...(headers.size > 0 ? { headers: Object.fromEntries([...headers].map((h) => [h, RESPONSE_HEADERS[h]])) } : {}),
      }),
    );
  }
  return applyDecorators(...decorators);
}
