import { spawn } from 'node:child_process';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import type { InstallSet } from '@velocity/shared';

/** What an install has done so far: tarballs fetched (or taken from npm's cache), bytes on disk. */
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

export interface NpmInstallOptions {
  /** The folder to install into; it holds nothing but what this writes. */
  dir: string;
  registry: string;
  /** npm's cache (shared between installs: a package fetched once is not fetched again). */
  cacheDir: string;
  signal: AbortSignal;
  /** Told of every tarball, at most every `progressEveryMs`. */
  onPackage?: (packages: number) => void;
}

/** Codes of failures that another attempt may not meet: the registry or the network, not the project. */
const TRANSIENT_CODES = new Set(['ECONNREFUSED', 'ECONNRESET', 'ETIMEDOUT', 'EAI_AGAIN', 'EPIPE', 'E500', 'E502', 'E503', 'E504', 'E429', 'EINTEGRITY']);

/** Lines of npm's error output that say nothing about this failure. */
const BOILERPLATE = [/^A complete log of this run/, /^404$/, /^404 Note that you can also install/, /^404 tarball, folder/, /^notarget In most cases/];

/**
 * Installs an npm dependency set into `dir` with no install scripts (no code of
 * the project's dependencies runs here), no user or global npmrc (no host
 * credentials), and every lockfile URL sent to the configured registry.
 * Resolves with the number of packages npm added.
 */
export async function npmInstall(set: InstallSet, options: NpmInstallOptions): Promise<number> {
  await writeFile(join(options.dir, 'package.json'), JSON.stringify({ name: 'velocity-dependencies', private: true, ...set.packageJson }, null, 2));
  if (set.lockfile) await writeFile(join(options.dir, set.lockfile.file), set.lockfile.content);
  // Empty user and global configs (npm refuses one file for both).
  const [userConfig, globalConfig] = [join(options.dir, '.npmrc-user'), join(options.dir, '.npmrc-global')];
  await Promise.all([writeFile(userConfig, ''), writeFile(globalConfig, '')]);
  const args = [
    set.lockfile?.file === 'package-lock.json' ? 'ci' : 'install',
    '--ignore-scripts',
    '--include=dev',
    '--no-audit',
    '--no-fund',
    '--no-update-notifier',
    '--loglevel=http',
    `--registry=${options.registry}`,
    // A registry that does not answer fails in seconds (the pipeline retries the step), not after npm's minute of backoff.
    '--fetch-retries=1',
    '--fetch-retry-mintimeout=500',
    '--fetch-retry-maxtimeout=2000',
    '--replace-registry-host=always',
    `--cache=${options.cacheDir}`,
    `--userconfig=${userConfig}`,
    `--globalconfig=${globalConfig}`,
  ];
  return runNpm(args, options);
}

function runNpm(args: string[], options: NpmInstallOptions): Promise<number> {
  // Only what npm needs: the provisioner's own secrets stay out of its environment.
  const env = { PATH: process.env.PATH ?? '/usr/bin:/bin', HOME: options.dir, npm_config_cache: options.cacheDir };
  const child = spawn('npm', args, { cwd: options.dir, env, stdio: ['ignore', 'pipe', 'pipe'], signal: options.signal, killSignal: 'SIGKILL' });
  const tarballs = new Set<string>();
  const errors: string[] = [];
  /** npm's output that is not a log line (it fails this way before its logger runs). */
  const other: string[] = [];
  let added: number | undefined;
  const onLine = (line: string) => {
    const tarball = /^npm http (?:fetch GET 200|cache) (?:\S+@)?(\S+\.tgz)\b/.exec(line)?.[1];
    if (tarball && !tarballs.has(tarball)) {
      tarballs.add(tarball);
      options.onPackage?.(tarballs.size);
    }
    const error = /^npm error (.*)$/.exec(line)?.[1];
    if (error !== undefined) errors.push(error.trim());
    else if (!line.startsWith('npm ')) other.push(line);
    const summary = /^(?:added|changed) (\d+) packages?/.exec(line);
    if (summary) added = Number(summary[1]);
  };
  createInterface({ input: child.stdout! }).on('line', onLine);
  createInterface({ input: child.stderr! }).on('line', onLine);
  return new Promise((resolve, reject) => {
    child.once('error', (error) => reject(options.signal.aborted ? options.signal.reason : new InstallError(`npm could not run: ${error.message}`, undefined, false)));
    child.once('close', (code) => {
      if (options.signal.aborted) reject(options.signal.reason);
      else if (code === 0) resolve(added ?? tarballs.size);
      else reject(installErrorOf(errors.length > 0 ? errors : other.slice(-5), code));
    });
  });
}

/** npm's `npm error` lines as one message: its code, then what it said, without the boilerplate. */
export function installErrorOf(errorLines: string[], exitCode: number | null): InstallError {
  const code = errorLines.map((line) => /^code (\S+)/.exec(line)?.[1]).find(Boolean);
  const said = errorLines
    .filter((line) => !/^code \S+$/.test(line) && !BOILERPLATE.some((pattern) => pattern.test(line)))
    .map((line) => line.replace(/^(404|notarget|peer|ERESOLVE|errno|syscall)\s+/, '').trim())
    .filter((line, index, all) => line !== '' && all.indexOf(line) === index);
  const message = said.join(' ').slice(0, 600) || `npm exited with code ${exitCode}`;
  return new InstallError(code ? `${message} (${code})` : message, code, code !== undefined && TRANSIENT_CODES.has(code));
}
