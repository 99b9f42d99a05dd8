import { fileBytes, isBinaryFile, type ProjectFile } from './project-files';

/**
 * The rules for project file paths, in one place: the api applies them before a
 * file reaches the database, the preview container again before it writes to
 * its work folder. Pure functions, no file system access.
 *
 * A path is relative, posix (`/` only), and names a file inside the project:
 * `src/App.jsx`. `./` and inner `.` segments are dropped (`./src/a.js` is
 * `src/a.js`); everything else that is odd is refused rather than guessed at.
 */

/** Folder names the machine owns: `node_modules` links to shared dependencies, `.vite-cache` is Vite's, `.git` is not project content. */
export const RESERVED_PATH_SEGMENTS = ['node_modules', '.vite-cache', '.git'] as const;

/**
 * Characters that make a name read other than it is: bidirectional controls
 * (U+202E turns `gpj.exe` into `exe.jpg` on screen), zero-width characters and
 * other invisible format characters.
 */
const INVISIBLE_FORMAT = /[\u061c\u200b-\u200f\u202a-\u202e\u2060-\u2064\u2066-\u206f\ufeff]/;

/**
 * The name a segment stands for where names are compared loosely: Unicode
 * compatibility forms folded (`ｇｉｔ` is `git`), case ignored (macOS and Windows
 * file systems, zip tools), trailing dots and spaces dropped (Windows).
 */
const looseName = (segment: string) => segment.normalize('NFKC').toLowerCase().replace(/[. ]+$/, '');

/** Longest path accepted, in characters. */
export const MAX_PATH_LENGTH = 1024;
/** Longest single name (file or folder), in UTF-8 bytes: the usual file system limit. */
export const MAX_SEGMENT_BYTES = 255;

export class UnsafePathError extends Error {
  constructor(readonly path: string, readonly reason: string) {
    super(`Refusing file path ${JSON.stringify(path)}: ${reason}`);
    this.name = 'UnsafePathError';
  }
}

/** The reason `raw` is refused, or null with `path` set to its normal form. */
export function checkFilePath(raw: unknown): { path: string; reason: null } | { path: null; reason: string } {
  const refuse = (reason: string) => ({ path: null, reason });
  if (typeof raw !== 'string') return refuse('not a string');
  if (raw.includes('\0')) return refuse('contains a NUL byte');
  // eslint-disable-next-line no-control-regex
  if (/[\u0001-\u001f\u007f]/.test(raw)) return refuse('contains a control character');
  if (raw.includes('\\')) return refuse('contains a backslash (use "/" between folders)');
  const invisible = INVISIBLE_FORMAT.exec(raw);
  if (invisible) return refuse(`contains an invisible or bidirectional formatting character (U+${invisible[0].codePointAt(0)!.toString(16).toUpperCase().padStart(4, '0')})`);
  if (raw.trim() === '') return refuse('empty name');
  if (raw.length > MAX_PATH_LENGTH) return refuse(`longer than ${MAX_PATH_LENGTH} characters`);
  if (raw.startsWith('/')) return refuse('absolute path (must be relative to the project root)');
  if (/^[a-zA-Z]:/.test(raw)) return refuse('absolute path (drive letter)');
  const segments = raw.split('/');
  if (segments.includes('..')) return refuse('".." segment');
  // Dropping `.` segments (`./src/a.js` is `src/a.js`) is the only normalisation.
  const kept = segments.filter((segment) => segment !== '.');
  if (kept.every((segment) => segment === '')) return refuse('empty name');
  if (kept.some((segment) => segment === '')) return refuse('empty path segment ("//" or a trailing "/")');
  if (kept.some((segment) => segment.trim() === '')) return refuse('blank path segment');
  const reserved = kept.map(looseName).find((name) => (RESERVED_PATH_SEGMENTS as readonly string[]).includes(name));
  if (reserved) return refuse(`"${reserved}" is reserved (in any case)`);
  const long = kept.find((segment) => Buffer.byteLength(segment) > MAX_SEGMENT_BYTES);
  if (long) return refuse(`a name is longer than ${MAX_SEGMENT_BYTES} bytes`);
  return { path: kept.join('/'), reason: null };
}

/** The normal form of a project file path; throws an UnsafePathError saying why it is refused. */
export function normalizeFilePath(raw: unknown): string {
  const checked = checkFilePath(raw);
  if (checked.reason !== null) throw new UnsafePathError(typeof raw === 'string' ? raw : String(raw), checked.reason);
  return checked.path;
}

/**
 * Files that make Vite or its plugins run the project's own code when the dev
 * server starts or a stylesheet is compiled: `*.config.{js,ts,…}` (vite,
 * postcss, tailwind, svelte…), `.postcssrc*` and `.babelrc*` (they may name a
 * plugin by a path in the project), and a package.json with a `postcss` or
 * `babel` key. A machine without a sandbox must not run them.
 */
const CODE_CONFIG_NAME = /\.config\.[cm]?[jt]sx?$|^\.postcssrc(\..+)?$|^\.babelrc(\..+)?$/i;

export function isCodeConfig(file: ProjectFile): boolean {
  const name = file.path.slice(file.path.lastIndexOf('/') + 1);
  if (CODE_CONFIG_NAME.test(name)) return true;
  // A package.json stored as bytes is read as Vite reads it: as UTF-8.
  return name === 'package.json' && packageJsonNamesCode(isBinaryFile(file) ? fileBytes(file).toString('utf8') : file.content);
}

function packageJsonNamesCode(content: string): boolean {
  try {
    const json = JSON.parse(content) as Record<string, unknown> | null;
    return typeof json === 'object' && json !== null && ('postcss' in json || 'babel' in json);
  } catch {
    return false;
  }
}
