import { dirname } from 'node:path';
import { DEPENDENCY_FILES, PermanentError, dependencySetOf, fileBytes, installedVersionsIn, type InstalledVersion } from '@velocity/contracts';
import { InstallError } from '../dependencies/installers/index';
import { awayFromTurn, required, type Step } from '../provision-context';

/**
 * The project's dependencies are installed, as its package.json and lockfile
 * declare them, in the shared dependency cache (a set installed before takes
 * nothing). A project without package.json, or whose dependencies the
 * service's own node_modules satisfies, uses those and installs nothing.
 */
export const installDependenciesStep: Step = {
  name: 'install-dependencies',
  timeoutMs: (config) => config.INSTALL_TIMEOUT_MS,
  async run(ctx) {
    const project = required(ctx.project, 'the project');
    // The files that decide the set, as text: an upload of raw bytes is stored as binary.
    const files = (await ctx.deps.store.listProjectFiles(project.id, DEPENDENCY_FILES)).map((file) => ({ path: file.path, content: fileBytes(file).toString('utf8') }));
    const set = dependencySetOf(files, serviceDependencies());
    if (set.kind !== 'install') return;
    const cache = ctx.deps.dependencies;
    if (!cache) throw new PermanentError('This project has dependencies of its own, and this provisioner installs none');
    // An install is the package manager's work and the registry's: the session's turn goes to others meanwhile.
    const installed = await awayFromTurn(ctx, () =>
      cache.ensure(set, { signal: ctx.signal, onProgress: (progress) => ctx.reportProgress?.(progress) }).catch((error: unknown) => {
        if (error instanceof InstallError && !error.retryable) throw new PermanentError(`Installing ${set.direct.length} dependencies failed: ${error.message}`);
        throw error;
      }),
    );
    ctx.dependencies = { key: installed.key, dir: installed.dir };
    ctx.logger.info(installed.cached ? 'dependencies from the cache' : 'dependencies installed', { key: installed.key, packages: installed.packages, bytes: installed.bytes, ms: installed.ms });
    return { packages: installed.packages, bytes: installed.bytes, cached: installed.cached };
  },
};

/**
 * Versions in the service's own node_modules (the template dependencies every
 * machine has), read once per package. Here, not in contracts: resolving Vite
 * would put it in every image that imports contracts.
 */
let service: InstalledVersion | undefined;
function serviceDependencies(): InstalledVersion {
  // <root>/node_modules/vite/package.json -> <root>/node_modules
  return (service ??= installedVersionsIn(dirname(dirname(require.resolve('vite/package.json')))));
}
