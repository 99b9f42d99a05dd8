import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { lockedPackagesOf } from '@velocity/contracts';
import { parse as parseYaml } from 'yaml';
import { failureOf, firstMismatch, runTool, servicePackageDir, writeProject, type InstallOptions, type Installer } from './installer';

type BerryLock = Record<string, { resolution?: string; dependencies?: Record<string, string> } | undefined>;

interface YarnRun {
  code: number | null;
  errors: Array<{ code: string; text: string }>;
  other: string[];
  added?: number;
}

/**
 * yarn 2+ (the service's yarn 4), exactly as yarn.lock says (`--immutable`),
 * configured by environment alone: no .yarnrc.yml is read (there or in any
 * parent folder) and no `yarnPath` runs, packages come from the configured
 * registry, scripts are off, and the layout is a node_modules folder (not
 * Plug'n'Play: the machine's Vite reads node_modules).
 */
export const yarnBerryInstall: Installer = async (set, options) => {
  const lockfile = set.lockfile!.content;
  const root = rootEntryOf(parseYaml(lockfile) as BerryLock);
  // With --immutable yarn resolves a changed range against the registry first, and fails on that rather than on the lockfile: said here first.
  const mismatch = firstMismatch(set.direct, 'yarn.lock', (name) => root?.dependencies?.[name]?.replace(/^npm:(?!@?[^@]+@)/, ''));
  if (mismatch) throw failureOf([`yarn.lock is not up to date with package.json: ${mismatch}`], undefined, '');
  // The lockfile names the project: its package.json must say the same name, or yarn would change the lockfile.
  await writeProject(set, options.dir, lockfile, root?.name);
  let run = await runYarn(['--immutable'], options);
  if (run.code !== 0 && run.errors.some(({ code }) => code === 'YN0028')) {
    // An older yarn's lockfile (yarn 3, early yarn 4): this yarn rewrites its format and checksums, not its versions; checked after.
    run = await runYarn(['--no-immutable'], options);
    if (run.code === 0) await checkSameVersions(lockfile, await readFile(join(options.dir, 'yarn.lock'), 'utf8'));
  }
  // Nothing fetched (all in the cache) is not said either: the lockfile's count then.
  if (run.code === 0) return run.added ?? lockedPackagesOf('yarn.lock', lockfile).length;
  const errorCode = run.errors.find(({ code }) => code !== 'YN0000')?.code;
  throw failureOf(run.errors.length > 0 ? run.errors.map(({ text }) => text) : run.other.slice(-5), errorCode, `yarn exited with code ${run.code}`);
};

async function runYarn(flags: string[], options: InstallOptions): Promise<YarnRun> {
  const args = [join(servicePackageDir('@yarnpkg/cli-dist'), 'bin', 'yarn.js'), 'install', ...flags, '--json'];
  const run: YarnRun = { code: null, errors: [], other: [] };
  const onLine = (line: string) => {
    const event = parseEvent(line);
    if (!event) return void run.other.push(line);
    // Yarn 4 tells no progress per package, only the count at the end of its fetch step.
    const count = /^(?:(\d+) packages were|(A) package was) added/.exec(event.data)?.slice(1).find(Boolean);
    if (count) options.onPackage?.((run.added = count === 'A' ? 1 : Number(count)));
    if (event.type === 'error' && !/^Failed with errors/.test(event.data)) run.errors.push({ code: event.displayName, text: event.data.split('\n')[0] });
  };
  run.code = await runTool({ command: process.execPath, args, env: yarnBerryEnvironment(options), onLine }, options);
  return run;
}

/** The lockfile yarn wrote pins the very versions the project's did. */
async function checkSameVersions(before: string, after: string): Promise<void> {
  const versions = (lockfile: string) => new Set(lockedPackagesOf('yarn.lock', lockfile).map(({ name, version }) => `${name}@${version}`));
  const [locked, installed] = [versions(before), versions(after)];
  const moved = [...installed].filter((entry) => !locked.has(entry));
  if (moved.length > 0 || installed.size !== locked.size) {
    throw failureOf([`yarn.lock is not up to date with package.json: installing would change it (${moved.slice(0, 3).join(', ') || 'entries removed'})`], 'YN0028', '');
  }
}

/**
 * Yarn's whole configuration, as environment (no .yarnrc.yml is read): the
 * configured registry (plain http allowed for it alone), no scripts, no
 * telemetry, a node_modules layout, its cache in the dependency cache.
 */
export function yarnBerryEnvironment(options: Pick<InstallOptions, 'registry' | 'cacheDir'>): Record<string, string> {
  const registry = new URL(options.registry);
  return {
    YARN_RC_FILENAME: '.velocity-no-yarnrc.yml',
    YARN_IGNORE_PATH: '1',
    YARN_NPM_REGISTRY_SERVER: registry.href.replace(/\/$/, ''),
    YARN_UNSAFE_HTTP_WHITELIST: registry.protocol === 'http:' ? registry.hostname : '',
    YARN_NODE_LINKER: 'node-modules',
    YARN_ENABLE_SCRIPTS: 'false',
    YARN_ENABLE_TELEMETRY: '0',
    YARN_ENABLE_HARDENED_MODE: '0',
    YARN_ENABLE_GLOBAL_CACHE: 'false',
    YARN_ENABLE_MIRROR: 'false',
    YARN_CACHE_FOLDER: join(options.cacheDir, 'cache'),
    YARN_GLOBAL_FOLDER: join(options.cacheDir, 'global'),
    YARN_HTTP_RETRY: '1',
  };
}

/** The project's own entry (`<name>@workspace:.`): its name and dependencies. */
function rootEntryOf(lock: BerryLock): { name: string; dependencies?: Record<string, string> } | undefined {
  for (const entry of Object.values(lock)) {
    const resolution = entry?.resolution ?? '';
    if (resolution.endsWith('@workspace:.')) return { name: resolution.slice(0, -'@workspace:.'.length), dependencies: entry?.dependencies };
  }
  return undefined;
}

function parseEvent(line: string): { type: string; displayName: string; data: string } | undefined {
  if (!line.startsWith('{')) return undefined;
  try {
    const event = JSON.parse(line) as { type?: string; displayName?: string; data?: unknown };
    return { type: String(event.type), displayName: String(event.displayName), data: String(event.data ?? '') };
  } catch {
    return undefined;
  }
}
