import { createHash } from 'node:crypto';
import { z } from 'zod';

/** The demo project that exists on every deployment, created on first use. */
export const DEMO_PROJECT_ID = '550e8400-e29b-41d4-a716-446655440000';

/** Standard base64 (RFC 4648, `+/`, padded): what Node and Postgres' decode() both read byte for byte. */
const BASE64 = /^[A-Za-z0-9+/]*={0,2}$/;

export function isBase64(text: string): boolean {
  return text.length % 4 === 0 && BASE64.test(text);
}

/**
 * A project file on every wire (store, machine files endpoint, file changes,
 * pool claim): text is `{ path, content }`; bytes are `{ path, content: <base64>,
 * encoding: 'base64' }`. One shape for both keeps code that only reads `path`
 * or forwards whole files working unchanged.
 */
export const projectFileShape = {
  path: z.string().min(1),
  content: z.string(),
  encoding: z.literal('base64').optional().describe('Present for binary files: `content` is then the bytes in base64'),
};

/** For a schema built on projectFileShape: a binary file's content must be base64. */
export function checkFileEncoding(file: { content: string; encoding?: 'base64' }, ctx: z.RefinementCtx): void {
  if (file.encoding === 'base64' && !isBase64(file.content)) {
    ctx.addIssue({ code: 'custom', path: ['content'], message: 'must be standard base64 (A-Z a-z 0-9 + /, padded with =) when encoding is base64' });
  }
}

export const projectFileSchema = z.object(projectFileShape).superRefine(checkFileEncoding);
export type ProjectFile = z.infer<typeof projectFileSchema>;
/** A file's content without its path. */
export type ProjectFileContent = Omit<ProjectFile, 'path'>;

export const isBinaryFile = (file: ProjectFileContent): boolean => file.encoding === 'base64';

/** The file's bytes, as they go on disk. */
export function fileBytes(file: ProjectFileContent): Buffer {
  return Buffer.from(file.content, isBinaryFile(file) ? 'base64' : 'utf8');
}

/** The file's size in bytes (what the limits count), without decoding it. */
export function fileByteLength(file: ProjectFileContent): number {
  return Buffer.byteLength(file.content, isBinaryFile(file) ? 'base64' : 'utf8');
}

const strictUtf8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });

/** A file of these bytes: text when they are UTF-8 without NUL (Postgres text cannot hold NUL), else binary. */
export function fileFromBytes(path: string, bytes: Uint8Array): ProjectFile {
  if (!bytes.includes(0)) {
    try {
      return { path, content: strictUtf8.decode(bytes) };
    } catch {
      // Not UTF-8: stored as bytes.
    }
  }
  return { path, content: Buffer.from(bytes).toString('base64'), encoding: 'base64' };
}

/** A file's ETag as the store computes it: the hex SHA-256 of its bytes (a text file's as UTF-8). */
export function fileEtag(file: ProjectFileContent): string {
  return createHash('sha256').update(fileBytes(file)).digest('hex');
}
