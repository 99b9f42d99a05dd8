import { z } from 'zod';
import type { Page, PageCursor } from '@velocity/session-store';
import { parseOr400 } from './validation';

/** A listing's cursor as clients see it: opaque (base64url of the sort time and id of the last row shown). */
const cursorSchema = z
  .string()
  .max(200, 'is not a cursor this api gave')
  .transform((text, ctx): PageCursor => {
    const decoded = z
      .tuple([z.iso.datetime({ precision: 6 }), z.uuid()])
      .safeParse(tryJson(Buffer.from(text, 'base64url').toString('utf8')));
    if (decoded.success) return { at: decoded.data[0], id: decoded.data[1] };
    ctx.addIssue({ code: 'custom', message: 'is not a cursor this api gave (pass nextCursor as it came)' });
    return z.NEVER;
  });

/** `?limit=1..100&cursor=<nextCursor of the page before>`. */
export const listQueryShape = {
  limit: z.coerce.number().int('must be a whole number').min(1, 'must be 1-100').max(100, 'must be 1-100').default(20),
  cursor: cursorSchema.optional(),
};

export function encodeCursor(cursor: PageCursor): string {
  return Buffer.from(JSON.stringify([cursor.at, cursor.id])).toString('base64url');
}

/** The query of a listing, 400 naming the parameter when it is not valid. */
export function parseListQuery<S extends z.ZodType>(schema: S, query: unknown): z.infer<S> {
  return parseOr400(schema, query ?? {}, 'query');
}

/** A page as clients get it: its items under `key`, and the cursor of the next page (null on the last). */
export function pageView<T, V, K extends string>(key: K, page: Page<T>, view: (item: T) => V): Record<K, V[]> & { nextCursor: string | null } {
  return { [key]: page.items.map(view), nextCursor: page.next ? encodeCursor(page.next) : null } as Record<K, V[]> & { nextCursor: string | null };
}

function tryJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}
