import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { InstallError, packageCounter, runTool, writeProject, type Installer } from './installer';

/** Codes of failures that another attempt may not meet: the registry or the network, not the project. */
const TRANSIENT_CODES = new Set(['ECONNREFUSED', 'ECONNRESET', 'ETIMEDOUT', 'EAI_AGAIN', 'EPIPE', 'E500', 'E502', 'E503', 'E504', 'E429', 'EINTEGRITY']);

/** Lines of npm's error output that say nothing about this failure. */
const BOILERPLATE = [/^A complete log of this run/, /^404$/, /^404 Note that you can also install/, /^404 tarball, folder/, /^notarget In most cases/];

/**
 * npm: `npm ci` with a package-lock.json, `npm install` from the ranges
 * without one; every lockfile URL sent to the configured registry
 * (`--replace-registry-host=always`). Resolves with the number of packages npm added.
 */
export const npmInstall: Installer = async (set, options) => {
  await writeProject(set, options.dir);
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
  const tarballs = packageCounter(options.onPackage);
  const errors: string[] = [];
  /** npm's output that is not a log line (it fails this way before its logger runs). */
  const other: string[] = [];
  let added: number | undefined;
  const onLine = (line: string) => {
    const tarball = /^npm http (?:fetch GET 200|cache) (?:\S+@)?(\S+\.tgz)\b/.exec(line)?.[1];
    if (tarball) tarballs.add(tarball);
    const error = /^npm error (.*)$/.exec(line)?.[1];
    if (error !== undefined) errors.push(error.trim());
    else if (!line.startsWith('npm ')) other.push(line);
    const summary = /^(?:added|changed) (\d+) packages?/.exec(line);
    if (summary) added = Number(summary[1]);
  };
  const code = await runTool({ command: 'npm', args, env: { npm_config_cache: options.cacheDir }, onLine }, options);
  if (code !== 0) throw installErrorOf(errors.length > 0 ? errors : other.slice(-5), code);
  return added ?? tarballs.count;
};

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
