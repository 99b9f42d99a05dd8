import { resolve, sep } from 'node:path';
import { normalizeFilePath, RESERVED_PATH_SEGMENTS, UnsafePathError } from '@velocity/contracts';

/**
 * Guards for writing files whose names come from outside (the project's file
 * list, the live file changes). The path rules themselves live in
 * libs/contracts/src/file-paths.ts, shared with the api; this adds the check that
 * a path resolves strictly inside WORK_DIR. Pure functions, no file system access.
 */
export { UnsafePathError };

/**
 * Names the container owns inside WORK_DIR: `node_modules` is a symlink to the
 * shared dependencies (a write there would change every session's react),
 * `.vite-cache` is Vite's cache; `.git` is not project content.
 */
export const RESERVED_TOP_LEVEL = RESERVED_PATH_SEGMENTS;

/**
 * Returns the normalised, relative posix form of a project file path, or throws an
 * UnsafePathError (see `normalizeFilePath` for the rules).
 */
export function safeRelativePath(raw: unknown): string {
  return normalizeFilePath(raw);
}

/** The absolute path of `relativePath` under `root`; throws unless it is strictly inside `root`. */
export function resolveInside(root: string, relativePath: string): string {
  const base = resolve(root);
  const target = resolve(base, relativePath);
  if (!target.startsWith(base + sep)) throw new UnsafePathError(relativePath, `resolves outside ${base}`);
  return target;
}
