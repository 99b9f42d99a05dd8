import { dirname } from 'node:path';
import { DEPENDENCY_FILES, PermanentError, dependencySetOf, fileBytes, installedVersionsIn, type DependencySet, type InstalledVersion, type SetFile } from '@velocity/contracts';
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
    // Read by ensure-project, unless it seeded the project (then they are the template's, read now).
    const stored = ctx.dependencyFiles ?? (await ctx.deps.store.listProjectFiles(project.id, DEPENDENCY_FILES));
    const files = stored.map((file) => ({ path: file.path, content: fileBytes(file).toString('utf8') }));
    const set = setOf(files);
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

/** Sets that install nothing, by their files' content: most sessions are of a few templates, parsed and checked once. */
const installFree = new Map<string, DependencySet>();
const INSTALL_FREE_REMEMBERED = 256;

function setOf(files: SetFile[]): DependencySet {
  const content = JSON.stringify(files);
  const known = installFree.get(content);
  if (known) return known;
  const set = dependencySetOf(files, serviceDependencies());
  if (set.kind === 'install') return set;
  if (installFree.size >= INSTALL_FREE_REMEMBERED) installFree.delete(installFree.keys().next().value!);
  installFree.set(content, set);
  return set;
}

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
