import { join } from 'node:path';
import { lockedPackagesOf, registryTarballOf } from '@velocity/contracts';
import { failureOf, runTool, servicePackageDir, writeProject, type Installer } from './installer';

/** One line of yarn's `--json` output. */
interface YarnEvent {
  type: string;
  data: unknown;
}

/**
 * yarn 1, exactly as yarn.lock says (`--frozen-lockfile`). Yarn fetches each
 * entry's `resolved` URL as written (registry.yarnpkg.com, registry.npmjs.org…),
 * so the lockfile is written with those URLs moved to the configured registry.
 * No .yarnrc or .npmrc is read (`--no-default-rc`); its cache is in the
 * dependency cache, one install at a time on it (yarn 1's cache is not safe
 * for concurrent writers).
 */
export const yarnClassicInstall: Installer = async (set, options) => {
  const lockfile = set.lockfile!.content;
  // yarn resolves a range the lockfile lacks against the registry before it says the lockfile is frozen: said here first.
  const missing = notInLockfile(set.direct, lockfile);
  if (missing) throw failureOf([`yarn.lock is not up to date with package.json: ${missing}`], undefined, '');
  await writeProject(set, options.dir, onRegistry(lockfile, options.registry));
  const args = [
    join(servicePackageDir('yarn'), 'bin', 'yarn.js'),
    'install',
    '--frozen-lockfile',
    '--ignore-scripts',
    '--production=false',
    '--non-interactive',
    '--no-default-rc',
    '--json',
    // Engines warn, as with npm, instead of failing the install.
    '--ignore-engines',
    '--registry',
    options.registry,
    '--cache-folder',
    options.cacheDir,
    '--mutex',
    `file:${join(options.cacheDir, '.mutex')}`,
    '--network-timeout',
    '30000',
  ];
  let fetchProgress: number | undefined;
  let fetchStepStarted = false;
  let fetched = 0;
  const errors: string[] = [];
  const other: string[] = [];
  const onLine = (line: string) => {
    const event = parseEvent(line);
    if (!event) return void other.push(line);
    const data = event.data as { message?: string; id?: number; current?: number; total?: number };
    if (event.type === 'step') fetchStepStarted = data.message === 'Fetching packages';
    else if (event.type === 'progressStart' && fetchStepStarted && fetchProgress === undefined) fetchProgress = data.id;
    else if (event.type === 'progressTick' && data.id === fetchProgress && data.current !== undefined) {
      fetched = data.current;
      options.onPackage?.(fetched);
    } else if (event.type === 'error') errors.push(String(event.data).split('\n')[0].replace(/^Error: /, ''));
  };
  const code = await runTool({ command: process.execPath, args, env: { YARN_DISABLE_SELF_UPDATE_CHECK: 'true' }, onLine }, options);
  if (code === 0) return fetched;
  if (errors.some((error) => error.startsWith('Your lockfile needs to be updated'))) throw failureOf(['yarn.lock is not up to date with package.json'], undefined, '');
  throw failureOf(errors.length > 0 ? errors : other.slice(-5), undefined, `yarn exited with code ${code}`);
};

/** The lockfile with every registry tarball URL on `registry` (the check before the install refused any other URL). */
export function onRegistry(lockfile: string, registry: string): string {
  const base = registry.endsWith('/') ? registry : `${registry}/`;
  return lockfile.replace(/^(\s+resolved\s+)"([^"]+)"/gm, (line, prefix: string, url: string) => {
    const tarball = registryTarballOf(url);
    return tarball ? `${prefix}"${new URL(tarball.path, base).href}${new URL(url).hash}"` : line;
  });
}

/** Which of package.json's `name@range` the lockfile has no entry for, if any (yarn would say only that it needs updating). */
function notInLockfile(direct: string[], lockfile: string): string | undefined {
  const patterns = new Set(lockedPackagesOf('yarn.lock', lockfile).flatMap(({ entry }) => entry.split(', ')));
  const missing = direct.filter((dependency) => !patterns.has(dependency));
  return missing.length > 0 ? `no entry for ${missing.join(', ')}` : undefined;
}

function parseEvent(line: string): YarnEvent | undefined {
  if (!line.startsWith('{')) return undefined;
  try {
    return JSON.parse(line) as YarnEvent;
  } catch {
    return undefined;
  }
}
