import { BadRequestException } from '@nestjs/common';
import type { z } from 'zod';

/**
 * Parses input with a zod schema; on failure a 400 that names the field:
 * `{ statusCode: 400, error: 'Bad Request', message: 'projectId: Invalid UUID', field: 'projectId' }`.
 */
export function parseOr400<S extends z.ZodType>(schema: S, input: unknown, where = 'body'): z.infer<S> {
  const parsed = schema.safeParse(input);
  if (parsed.success) return parsed.data;
  const issue = parsed.error.issues[0];
  // An unknown key is named itself, not the object that holds it.
  const path = issue.code === 'unrecognized_keys' ? [...issue.path, issue.keys[0]] : issue.path;
  const field = path.length > 0 ? path.join('.') : where;
  const message = issue.code === 'unrecognized_keys' ? 'unknown field' : issue.message;
  throw new BadRequestException({ statusCode: 400, error: 'Bad Request', message: `${field}: ${message}`, field });
}
