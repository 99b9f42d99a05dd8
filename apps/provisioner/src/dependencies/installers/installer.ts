import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import type { InstallSet } from '@velocity/contracts';

/** What an install has done so far: packages fetched (or taken from the manager's cache), bytes on disk. */
export interface InstallProgress {
  packages: number;
  bytes: number;
}

/** An install that failed, with the reason the user can act on (the package and the registry's message). */
export class InstallError extends Error {
  constructor(message: string, readonly code: string | undefined, readonly retryable: boolean) {
    super(message);
    this.name = 'InstallError';
  }
}

export interface InstallOptions {
  /** The folder to install into; it holds nothing but what the installer writes. */
  dir: string;
  registry: string;
  /** The package manager's own cache (shared between its installs: a package fetched once is not fetched again). */
  cacheDir: string;
  signal: AbortSignal;
  /** Told of every package fetched, as the count so far. */
  onPackage?: (packages: number) => void;
}

/**
 * Installs a dependency set into `options.dir` with no install scripts (no code
 * of the project's dependencies runs here), no user or global configuration
 * (no host credentials), and every download sent to `options.registry`.
 * Resolves with the number of packages installed.
 */
export type Installer = (set: InstallSet, options: InstallOptions) => Promise<number>;

/** Failures that another attempt may not meet: the registry or the network, not the project. */
const TRANSIENT = /\b(ECONNREFUSED|ECONNRESET|ETIMEDOUT|EAI_AGAIN|EPIPE|ESOCKETTIMEDOUT|EINTEGRITY|ConnectionRefused|ConnectionReset|Timeout)\b|socket hang up|(?:\bE|\bERR_PNPM_FETCH_|\bstatus |"|- )(?:50[0234]|429)\b/;

export function isTransient(text: string): boolean {
  return TRANSIENT.test(text);
}

/** Writes the project's package.json (its dependency fields only, under `name`) and the lockfile as the manager reads it. */
export async function writeProject(set: InstallSet, dir: string, lockfileContent = set.lockfile?.content, name = 'velocity-dependencies'): Promise<void> {
  await writeFile(join(dir, 'package.json'), JSON.stringify({ name, private: true, ...set.packageJson }, null, 2));
  if (set.lockfile && lockfileContent !== undefined) await writeFile(join(dir, set.lockfile.file), lockfileContent);
}

/** The folder of a package the service itself depends on (its package managers), as Node would find it from here. */
export function servicePackageDir(name: string): string {
  for (const dir of require.resolve.paths(name) ?? []) {
    if (existsSync(join(dir, name, 'package.json'))) return join(dir, name);
  }
  throw new InstallError(`${name} is not installed with the service (run npm ci)`, undefined, false);
}

export interface ToolRun {
  command: string;
  args: string[];
  /** Added to PATH and HOME (the install folder, so no home configuration is read). */
  env?: Record<string, string>;
  /** Every line the tool prints, stdout and stderr alike. */
  onLine: (line: string) => void;
}

/**
 * Runs a package manager in the install folder with PATH and HOME only (the
 * provisioner's own secrets stay out), killed when the signal aborts. Resolves
 * with its exit code.
 */
export function runTool(run: ToolRun, options: InstallOptions): Promise<number | null> {
  const env = { PATH: process.env.PATH ?? '/usr/bin:/bin', HOME: options.dir, ...run.env };
  const child = spawn(run.command, run.args, { cwd: options.dir, env, stdio: ['ignore', 'pipe', 'pipe'], signal: options.signal, killSignal: 'SIGKILL' });
  createInterface({ input: child.stdout! }).on('line', run.onLine);
  createInterface({ input: child.stderr! }).on('line', run.onLine);
  return new Promise((resolve, reject) => {
    child.once('error', (error) => reject(options.signal.aborted ? options.signal.reason : new InstallError(`${run.command} could not run: ${error.message}`, undefined, false)));
    child.once('close', (code) => (options.signal.aborted ? reject(options.signal.reason) : resolve(code)));
  });
}

/** Counts distinct packages as a tool reports them, telling `onPackage` of each new one. */
export function packageCounter(onPackage: InstallOptions['onPackage']): { add(id: string): void; readonly count: number } {
  const seen = new Set<string>();
  return {
    add(id) {
      if (seen.has(id)) return;
      seen.add(id);
      onPackage?.(seen.size);
    },
    get count() {
      return seen.size;
    },
  };
}

/** A failure's message: what the tool said, deduplicated, at most 600 characters, and its code when it has one. */
export function failureOf(said: string[], code: string | undefined, fallback: string): InstallError {
  const lines = said.map((line) => line.trim()).filter((line, index, all) => line !== '' && all.indexOf(line) === index);
  const message = lines.join(' ').slice(0, 600) || fallback;
  return new InstallError(code ? `${message} (${code})` : message, code, isTransient(`${code ?? ''} ${message}`));
}

/**
 * The first of package.json's `name@spec` that the lockfile records with
 * another spec or not at all, as "name is <spec> in package.json, <spec> in
 * <lockfile>"; `lockedSpec` reads the lockfile's spec of a name.
 */
export function firstMismatch(direct: string[], lockfile: string, lockedSpec: (name: string) => string | undefined): string | undefined {
  for (const dependency of direct) {
    const at = dependency.indexOf('@', 1);
    const [name, spec] = [dependency.slice(0, at), dependency.slice(at + 1)];
    const locked = lockedSpec(name);
    if (locked === undefined) return `${name} is not in ${lockfile}`;
    if (locked !== spec) return `${name} is ${spec} in package.json, ${locked} in ${lockfile}`;
  }
  return undefined;
}
