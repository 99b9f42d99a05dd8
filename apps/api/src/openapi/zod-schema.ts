import type { SchemaObject } from '@nestjs/swagger';
import { z } from 'zod';

/**
 * A zod schema as an OpenAPI 3.1 schema object (JSON Schema 2020-12, which is
 * OpenAPI 3.1's own dialect), so the document describes the very schemas that
 * validate the requests (one source of truth).
 *
 * - `io: 'input'` (requests): what a client may send (`tier` with a default is
 *   optional); `'output'` (responses, events): what the api sends.
 * - `$schema` is dropped (the document says the dialect once); a schema that
 *   would need `$defs` (ids from zod's registry, recursion) is refused rather
 *   than emitted with references that do not resolve inside the document.
 */
export function toOpenApi(schema: z.ZodType, io: 'input' | 'output' = 'input'): SchemaObject {
  const json = z.toJSONSchema(schema, { target: 'draft-2020-12', io, unrepresentable: 'throw' }) as Record<string, unknown>;
  delete json.$schema;
  if ('$defs' in json || JSON.stringify(json).includes('"$ref":"#/$defs')) {
    throw new Error('toOpenApi: this schema needs $defs (a registered id or a recursive type); inline it or add it to components by hand');
  }
  // OpenAPI 3.1 schema objects are JSON Schema 2020-12; @nestjs/swagger's types are 3.0's (boolean exclusiveMinimum…).
  return json as SchemaObject;
}
