import { join } from 'node:path';
import { parseJsonWithTrailingCommas } from '@velocity/contracts';
import { failureOf, firstMismatch, packageCounter, runTool, servicePackageDir, writeProject, type Installer } from './installer';

type BunLock = { workspaces?: Record<string, Record<string, Record<string, string> | undefined>>; packages?: Record<string, unknown[]> };

/** bun's names for the platforms its npm packages are built for (`@oven/bun-<os>-<arch>`). */
const BUN_ARCH: Record<string, string> = { x64: 'x64', arm64: 'aarch64' };

/**
 * bun (the binary of the service's `bun` package), exactly as bun.lock says
 * (`--frozen-lockfile`): no bunfig or npmrc of the host (HOME is the install
 * folder), its cache in the dependency cache, no telemetry.
 */
export const bunInstall: Installer = async (set, options) => {
  const lock = parseJsonWithTrailingCommas(set.lockfile!.content) as BunLock;
  const root = lock.workspaces?.[''] ?? {};
  // bun resolves a changed range against the registry before it says the lockfile is frozen: said here first.
  const lockedSpec = (name: string) => ['dependencies', 'devDependencies', 'optionalDependencies'].map((field) => root[field]?.[name]).find((spec) => spec !== undefined);
  const mismatch = firstMismatch(set.direct, 'bun.lock', lockedSpec);
  if (mismatch) throw failureOf([`bun.lock is not up to date with package.json: ${mismatch}`], undefined, '');
  await writeProject(set, options.dir, onDefaultRegistry(lock, set.lockfile!.content));
  const binary = join(servicePackageDir(`@oven/bun-${process.platform}-${BUN_ARCH[process.arch] ?? process.arch}`), 'bin', 'bun');
  const args = ['install', '--frozen-lockfile', '--ignore-scripts', '--no-progress', '--verbose', `--registry=${options.registry}`, `--cache-dir=${options.cacheDir}`];
  const fetched = packageCounter(options.onPackage);
  const errors: string[] = [];
  const other: string[] = [];
  let installed: number | undefined;
  const onLine = (line: string) => {
    const tarball = /^\s*HTTP\/1\.1 GET (\S+\.tgz)$/.exec(line)?.[1];
    if (tarball) fetched.add(tarball);
    if (/^(error|note): /.test(line)) errors.push(line.replace(/^error: /, ''));
    else if (!line.startsWith(' ') && line.trim() !== '') other.push(line);
    const summary = /^(\d+) packages? installed/.exec(line);
    if (summary) installed = Number(summary[1]);
  };
  const env = { BUN_INSTALL_CACHE_DIR: options.cacheDir, DO_NOT_TRACK: '1' };
  const code = await runTool({ command: binary, args, env, onLine }, options);
  if (code === 0) return installed ?? fetched.count;
  if (errors.some((error) => error.startsWith('lockfile had changes, but lockfile is frozen'))) {
    throw failureOf([`bun.lock is not up to date with package.json: ${errors.filter((error) => error.startsWith('note: ')).map((note) => note.slice(6)).join(' ')}`], undefined, '');
  }
  // bun says a failed download once per package: the first few say it all.
  throw failureOf(errors.filter((error) => !error.startsWith('note: ')).slice(0, 3).concat(errors.length === 0 ? other.slice(-5) : []), undefined, `bun exited with code ${code}`);
};

/** bun.lock with every package on the default registry (its second field empty), which the install sets to the configured one. */
function onDefaultRegistry(lock: BunLock, content: string): string {
  const elsewhere = (entry: unknown[]) => typeof entry[1] === 'string' && /^https?:/.test(entry[1]);
  if (!Object.values(lock.packages ?? {}).some(elsewhere)) return content;
  const packages = Object.fromEntries(Object.entries(lock.packages ?? {}).map(([key, entry]) => [key, elsewhere(entry) ? [entry[0], '', ...entry.slice(2)] : entry]));
  return JSON.stringify({ ...lock, packages }, null, 2);
}
