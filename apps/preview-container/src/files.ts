import { randomUUID } from 'node:crypto';
import { lstat, mkdir, readFile, readdir, readlink, realpath, rename, rm, symlink, unlink, writeFile } from 'node:fs/promises';
import { dirname, join, relative, sep } from 'node:path';
import { z } from 'zod';
import { errorMessage, fileBytes, isBinaryFile, MACHINE_VITE_CACHE_DIR, projectFileSchema, type ProjectFile } from '@velocity/contracts';
import { requestText, retry } from '@velocity/runtime';
import { resolveInside, safeRelativePath, UnsafePathError } from './path-safety';

/** Getting the project's files from FILES_URL and putting them on disk in WORK_DIR, byte for byte. */
export type { ProjectFile };

export class FilesError extends Error {
  constructor(message: string, readonly retryable: boolean) {
    super(message);
    this.name = 'FilesError';
  }
}

const filesResponse = z.object({ files: z.array(projectFileSchema) });

export interface FetchFilesOptions {
  /** Per-attempt timeout, ms. */
  timeoutMs?: number;
  /** Attempts in all, including the first. */
  attempts?: number;
  /** Wait before the second attempt, doubled for each later one, ms. */
  backoffMs?: number;
}

/**
 * GETs `{ files: [{ path, content, encoding? }] }` from `url` with the machine token as a bearer
 * token. Network errors, timeouts, 429 and 5xx are retried; other statuses and a
 * malformed body fail at once. Every error message names the URL.
 */
export function fetchProjectFiles(url: string, token: string, options: FetchFilesOptions = {}): Promise<ProjectFile[]> {
  return fetchFiles({ method: 'GET', url, token }, options);
}

/**
 * The files at `paths` as they are now, POSTed as `{ paths }` to the same URL (FILES_URL); a path the
 * project has no file at is left out of the answer. Retried and reported as fetchProjectFiles.
 */
export function fetchProjectFilesAt(url: string, token: string, paths: string[], options: FetchFilesOptions = {}): Promise<ProjectFile[]> {
  return fetchFiles({ method: 'POST', url, token, body: JSON.stringify({ paths }) }, options);
}

interface FilesRequest {
  method: 'GET' | 'POST';
  url: string;
  token: string;
  body?: string;
}

async function fetchFiles(request: FilesRequest, options: FetchFilesOptions): Promise<ProjectFile[]> {
  const { timeoutMs = 10_000, attempts = 4, backoffMs = 250 } = options;
  const { method, url } = request;
  try {
    return await retry(() => fetchOnce(request, timeoutMs), {
      attempts,
      initialDelayMs: backoffMs,
      jitter: false,
      shouldRetry: (error) => !(error instanceof FilesError) || error.retryable,
    });
  } catch (error) {
    const last = error instanceof FilesError ? error.message : `${method} ${url} failed: ${errorMessage(error)}`;
    throw new FilesError(`Could not load project files from ${url}: ${last}`, false);
  }
}

/** One request with node's HTTP client, which also reaches an api on a Unix socket (`http://unix:<socket>:<path>`). */
async function fetchOnce({ method, url, token, body }: FilesRequest, timeoutMs: number): Promise<ProjectFile[]> {
  const signal = AbortSignal.timeout(timeoutMs);
  const headers: Record<string, string> = { authorization: `Bearer ${token}`, accept: 'application/json' };
  if (body !== undefined) headers['content-type'] = 'application/json';
  let response: { status: number; body: string };
  try {
    response = await requestText(url, { method, headers, body, signal });
  } catch (error) {
    const reason = signal.aborted ? `timed out after ${timeoutMs} ms` : `failed: ${(error as NodeJS.ErrnoException)?.code ?? errorMessage(error)}`;
    throw new FilesError(`${method} ${url} ${reason}`, true);
  }
  if (response.status < 200 || response.status > 299) {
    const text = response.body.slice(0, 200);
    const retryable = response.status >= 500 || response.status === 429;
    throw new FilesError(`${method} ${url} answered ${response.status}${text ? `: ${text}` : ''}`, retryable);
  }
  let json: unknown;
  try {
    json = JSON.parse(response.body);
  } catch (error) {
    throw new FilesError(`${method} ${url} returned a body that is not JSON: ${errorMessage(error)}`, false);
  }
  const parsed = filesResponse.safeParse(json);
  if (!parsed.success) {
    throw new FilesError(`${method} ${url} returned JSON without a valid "files" list: ${parsed.error.issues[0]?.message}`, false);
  }
  return parsed.data.files;
}

/**
 * Writes the files under `workDir`. Every path is checked before anything is
 * written, so one unsafe path refuses the whole list. Each final directory is
 * resolved through the file system too, so a symlink cannot lead a write outside.
 * Each file is replaced whole (written aside, then renamed into place): Vite may
 * be serving it at that moment, and a file truncated and refilled in place can be
 * read half-written, or sent with the length it had a moment before.
 */
export async function writeProjectFiles(workDir: string, files: ProjectFile[]): Promise<number> {
  await mkdir(workDir, { recursive: true });
  const root = await realpath(workDir);
  const seen = new Set<string>();
  const planned = files.map((file) => {
    const rel = safeRelativePath(file.path);
    if (seen.has(rel)) throw new UnsafePathError(file.path, `duplicate of "${rel}"`);
    seen.add(rel);
    return { target: resolveInside(root, rel), bytes: fileBytes(file) };
  });
  const staging = join(root, STAGING_DIR);
  if (planned.length > 0) await mkdir(staging, { recursive: true });
  for (const { target, bytes } of planned) {
    const dir = dirname(target);
    await mkdir(dir, { recursive: true });
    const realDir = await realpath(dir);
    if (realDir !== root && !realDir.startsWith(root + sep)) {
      throw new UnsafePathError(relative(root, target), `its folder resolves outside ${root}`);
    }
    await replaceFile(join(staging, randomUUID()), target, bytes);
  }
  return planned.length;
}

/**
 * Where files are written before they are renamed into place: inside the work
 * folder (a rename does not cross file systems) and under Vite's cache folder,
 * which Vite's watcher ignores, so a page hears of the file once, at its rename.
 */
const STAGING_DIR = join(MACHINE_VITE_CACHE_DIR, 'incoming');

/** `target` becomes a file holding `bytes` in one step; a symlink there is replaced, never written through. */
async function replaceFile(aside: string, target: string, bytes: Buffer): Promise<void> {
  try {
    await writeFile(aside, bytes);
    await rename(aside, target);
  } catch (err) {
    await rm(aside, { force: true });
    throw err;
  }
}

/**
 * Makes `workDir/node_modules` a symlink to the shared dependencies so bare imports
 * (`react`) resolve. Replaces an old symlink; refuses to touch a real folder.
 */
export async function linkNodeModules(workDir: string, nodeModulesDir: string): Promise<string> {
  const link = join(workDir, 'node_modules');
  const target = await realpath(nodeModulesDir);
  const existing = await lstat(link).catch(() => null);
  if (existing) {
    if (!existing.isSymbolicLink()) throw new Error(`${link} exists and is not a symlink; refusing to replace it`);
    if ((await readlink(link)) === target) return target;
    await unlink(link);
  }
  await symlink(target, link, 'dir');
  return target;
}

/** Folders of the work folder that are not the project's: never synced away. */
const NOT_PROJECT = new Set(['node_modules', '.vite-cache']);

/**
 * A file's content as one string that tells text from bytes: text as it is,
 * a binary file's base64 after a NUL (which no text file holds), so a text
 * file and a binary one never compare equal by their `content` alone.
 */
export function contentKey(file: ProjectFile): string {
  return isBinaryFile(file) ? `\0${file.content}` : file.content;
}

/** What a list of files puts on disk, for syncProjectFiles' `written`: normal path → contentKey. */
export function writtenContents(files: ProjectFile[]): Map<string, string> {
  return new Map(files.map((file) => [safeRelativePath(file.path), contentKey(file)]));
}

/**
 * Makes the work folder hold exactly `files`: writes those whose bytes differ
 * from what is on disk, then removes every other file (a pooled machine's
 * template files, when it is claimed). Returns the paths it wrote and removed,
 * so the caller can tell Vite which modules changed.
 */
export async function syncProjectFiles(
  workDir: string,
  files: ProjectFile[],
  /**
   * What this process wrote there (writtenContents: normal path → contentKey), when nothing else
   * writes the folder: compared instead of reading each file back.
   */
  written?: ReadonlyMap<string, string>,
): Promise<{ written: string[]; removed: string[] }> {
  // Every path is checked (and the whole list refused on one bad path) before anything is read or written.
  const normal = files.map((file) => ({ ...file, path: safeRelativePath(file.path) }));
  const changed: ProjectFile[] = [];
  for (const file of normal) {
    const same = written ? written.get(file.path) === contentKey(file) : await sameOnDisk(join(workDir, file.path), file);
    if (!same) changed.push(file);
  }
  await writeProjectFiles(workDir, changed);
  const keep = new Set(normal.map((file) => file.path));
  const removed: string[] = [];
  for (const rel of await listFiles(workDir)) {
    if (keep.has(rel)) continue;
    await unlink(join(workDir, rel));
    removed.push(rel);
  }
  return { written: changed.map((file) => file.path), removed };
}

/** Whether the file at `target` holds exactly the file's bytes. */
async function sameOnDisk(target: string, file: ProjectFile): Promise<boolean> {
  const current = await readFile(target).catch(() => null);
  return current !== null && current.equals(fileBytes(file));
}

async function listFiles(root: string, prefix = ''): Promise<string[]> {
  const entries = await readdir(join(root, prefix), { withFileTypes: true });
  const nested = await Promise.all(
    entries.map(async (entry) => {
      const rel = prefix ? `${prefix}/${entry.name}` : entry.name;
      if (!prefix && NOT_PROJECT.has(entry.name)) return [];
      if (entry.isDirectory()) return listFiles(root, rel);
      return [rel];
    }),
  );
  return nested.flat();
}
