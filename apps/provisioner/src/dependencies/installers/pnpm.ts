import { readFileSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { failureOf, packageCounter, runTool, servicePackageDir, writeProject, type Installer } from './installer';

/** One line of pnpm's `--reporter=ndjson` output (the fields read here). */
interface PnpmLog {
  name?: string;
  level?: string;
  status?: string;
  packageId?: string;
  message?: string;
  added?: number;
  code?: string;
  hint?: string;
  err?: { message?: string; code?: string };
}

/**
 * pnpm, exactly as pnpm-lock.yaml says (`--frozen-lockfile`): its store in the
 * dependency cache (packages are hard-linked from it), its symlinks relative
 * (the set's folder is renamed into place), no workspace above the folder, and
 * no package manager switch (`packageManager` is not in the set anyway).
 */
export const pnpmInstall: Installer = async (set, options) => {
  // The service's pnpm reads lockfileVersion 9 only (pnpm 9's and 10's); an older one would fail naming the install folder.
  const lockfileVersion = /^lockfileVersion:\s*['"]?([\d.]+)/m.exec(set.lockfile!.content)?.[1];
  if (lockfileVersion !== undefined && !lockfileVersion.startsWith('9.')) {
    throw failureOf([`pnpm-lock.yaml is lockfileVersion ${lockfileVersion}, which pnpm ${pnpmVersion()} does not read: write it again with pnpm 9 or later`], undefined, '');
  }
  await writeProject(set, options.dir);
  const emptyConfig = join(options.dir, '.npmrc-empty');
  await writeFile(emptyConfig, '');
  const args = [
    join(servicePackageDir('pnpm'), 'bin', 'pnpm.cjs'),
    'install',
    '--frozen-lockfile',
    '--ignore-scripts',
    '--reporter=ndjson',
    `--registry=${options.registry}`,
    `--store-dir=${join(options.cacheDir, 'store')}`,
    `--config.cache-dir=${join(options.cacheDir, 'metadata')}`,
    `--config.state-dir=${join(options.cacheDir, 'state')}`,
    '--config.update-notifier=false',
    '--config.manage-package-manager-versions=false',
    '--config.node-linker=isolated',
    // As npm's: a registry that does not answer fails in seconds, and the pipeline retries the step.
    '--fetch-retries=1',
    '--fetch-retry-mintimeout=500',
    '--fetch-retry-maxtimeout=2000',
  ];
  const fetched = packageCounter(options.onPackage);
  const failures: PnpmLog[] = [];
  const failedFetches: string[] = [];
  const other: string[] = [];
  let added = 0;
  const onLine = (line: string) => {
    const log = parseLog(line);
    if (!log) return void other.push(line);
    if (log.name === 'pnpm:progress' && (log.status === 'fetched' || log.status === 'found_in_store') && log.packageId) fetched.add(log.packageId);
    if (log.name === 'pnpm:stats' && typeof log.added === 'number') added += log.added;
    if (log.name === 'pnpm:package-requester' && log.message?.startsWith('Fetching ')) failedFetches.push(log.message.replace(/!$/, ''));
    if (log.level === 'error') failures.push(log);
  };
  const env = {
    // No user, global or workspace configuration but this empty one (pnpm looks for pnpm-workspace.yaml in every parent folder otherwise).
    npm_config_userconfig: emptyConfig,
    npm_config_globalconfig: emptyConfig,
    NPM_CONFIG_WORKSPACE_DIR: options.dir,
  };
  const code = await runTool({ command: process.execPath, args, env, onLine }, options);
  if (code !== 0) throw pnpmFailure(failures, failedFetches, other, code);
  return added || fetched.count;
};

function pnpmVersion(): string {
  return JSON.parse(readFileSync(join(servicePackageDir('pnpm'), 'package.json'), 'utf8')).version;
}

function parseLog(line: string): PnpmLog | undefined {
  if (!line.startsWith('{')) return undefined;
  try {
    return JSON.parse(line) as PnpmLog;
  } catch {
    return undefined;
  }
}

/** pnpm's error as the user can act on it: an out-of-date lockfile says what differs; a fetch, which package and the registry's answer. */
function pnpmFailure(failures: PnpmLog[], failedFetches: string[], other: string[], exitCode: number | null) {
  const failure = failures.at(-1);
  const code = failure?.err?.code ?? failure?.code;
  if (code === 'ERR_PNPM_OUTDATED_LOCKFILE') {
    const reason = (failure?.hint ?? '').split('Failure reason:')[1]?.replace(/\s*\n\s*[*-]?\s*/g, ' ').trim();
    return failureOf([`pnpm-lock.yaml is not up to date with package.json${reason ? `: ${reason}` : ''}`], code, '');
  }
  const said = failure?.err?.message ?? failure?.message;
  if (said === undefined) return failureOf(other.slice(-5), undefined, `pnpm exited with code ${exitCode}`);
  return failureOf([failedFetches.length > 0 && code?.startsWith('ERR_PNPM_FETCH') ? `${failedFetches.join(', ')}: ${said}` : said], code, '');
}
