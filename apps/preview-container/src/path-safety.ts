import { resolve, sep } from 'node:path';

/**
 * Guards for writing files whose names come from outside (the project's file
 * list). Pure functions, no file system access.
 */
export class UnsafePathError extends Error {
  constructor(readonly path: string, reason: string) {
    super(`Refusing file path ${JSON.stringify(path)}: ${reason}`);
    this.name = 'UnsafePathError';
  }
}

/**
 * Top-level names the container owns inside WORK_DIR: `node_modules` is a symlink
 * to the shared dependencies (a write there would change every session's react),
 * `.vite-cache` is Vite's cache.
 */
export const RESERVED_TOP_LEVEL = ['node_modules', '.vite-cache'] as const;

/**
 * Returns the normalised, relative posix form of a project file path, or throws an
 * UnsafePathError: empty names, NUL bytes, absolute paths (posix, drive letter, UNC)
 * and any `..` segment are refused; `.` and empty segments are dropped.
 */
export function safeRelativePath(raw: unknown): string {
  if (typeof raw !== 'string') throw new UnsafePathError(String(raw), 'not a string');
  if (raw.includes('\0')) throw new UnsafePathError(raw, 'contains a NUL byte');
  const path = raw.replace(/\\/g, '/');
  if (path.trim() === '') throw new UnsafePathError(raw, 'empty name');
  if (path.startsWith('/') || /^[a-zA-Z]:/.test(path)) throw new UnsafePathError(raw, 'absolute path');
  const segments = path.split('/');
  if (segments.includes('..')) throw new UnsafePathError(raw, '".." segment');
  const kept = segments.filter((s) => s !== '' && s !== '.');
  if (kept.length === 0) throw new UnsafePathError(raw, 'empty name');
  if (kept.some((s) => s.trim() === '')) throw new UnsafePathError(raw, 'blank path segment');
  if ((RESERVED_TOP_LEVEL as readonly string[]).includes(kept[0])) {
    throw new UnsafePathError(raw, `"${kept[0]}" is reserved`);
  }
  return kept.join('/');
}

/** The absolute path of `relativePath` under `root`; throws unless it is strictly inside `root`. */
export function resolveInside(root: string, relativePath: string): string {
  const base = resolve(root);
  const target = resolve(base, relativePath);
  if (!target.startsWith(base + sep)) throw new UnsafePathError(relativePath, `resolves outside ${base}`);
  return target;
}
