import { isYarnBerryLockfile, type InstallSet } from '@velocity/contracts';
import { bunInstall } from './bun';
import type { InstallOptions, Installer } from './installer';
import { npmInstall } from './npm';
import { pnpmInstall } from './pnpm';
import { yarnBerryInstall } from './yarn-berry';
import { yarnClassicInstall } from './yarn-classic';

export { InstallError, type InstallOptions, type InstallProgress } from './installer';

/** Each installer and the folder of the dependency cache its own cache lives in. */
const INSTALLERS: Record<string, { install: Installer; cache: string }> = {
  npm: { install: npmInstall, cache: '.npm-cache' },
  pnpm: { install: pnpmInstall, cache: '.pnpm-cache' },
  'yarn-classic': { install: yarnClassicInstall, cache: '.yarn-cache' },
  'yarn-berry': { install: yarnBerryInstall, cache: '.yarn-berry-cache' },
  bun: { install: bunInstall, cache: '.bun-cache' },
};

/** The installer of a set: its lockfile's package manager (yarn 1 and yarn 2+ read different lockfiles), npm without one. */
function installerOf(set: InstallSet): { install: Installer; cache: string } {
  if (set.manager !== 'yarn') return INSTALLERS[set.manager];
  return INSTALLERS[isYarnBerryLockfile(set.lockfile?.content ?? '') ? 'yarn-berry' : 'yarn-classic'];
}

/** The folder, under the dependency cache, of the cache of the package manager that installs `set`. */
export function managerCacheOf(set: InstallSet): string {
  return installerOf(set).cache;
}

/** Installs a set with its package manager; resolves with the number of packages installed. */
export function installDependencies(set: InstallSet, options: InstallOptions): Promise<number> {
  return installerOf(set).install(set, options);
}
