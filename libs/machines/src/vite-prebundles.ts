import { createHash, randomBytes } from 'node:crypto';
import { existsSync, statSync } from 'node:fs';
import { chown, cp, mkdir, readdir, rename, rm } from 'node:fs/promises';
import { join } from 'node:path';

/**
 * Vite's pre-bundled dependencies (`<cacheDir>/deps`), made once per
 * dependency set and template and copied into each new machine's cache
 * folder, so a machine does not bundle React (or the set's packages) again.
 *
 * Kept here, beside the machines: `<machines dir>/.prebundled/<key>/deps`,
 * keyed by the dependency folder's real path (the template's, the service's
 * own, or a set of the dependency cache) and the template. A copy is made by a
 * machine that ran nothing of any user's (a pooled machine on the template's
 * files), never taken from a session's machine: a project's code could have
 * written anything into its own cache folder. Vite checks a copy against the
 * machine's own config and dependencies (its lockfile and config hash,
 * `root` included) and bundles afresh when it does not fit: a sandboxed
 * machine's root is the same path in every machine, so copies fit there.
 */
export class VitePrebundles {
  constructor(private readonly dir: string) {}

  /**
   * The key of a dependency folder and template: the folder's real path, and when it last
   * changed (its own and npm's lockfile's mtime), since Vite's check of a copy has no lockfile
   * to go by in a template's project, and the service's folder changes on an upgrade in place.
   */
  static keyOf(nodeModulesRealDir: string, templateType: string): string {
    const changed = [nodeModulesRealDir, join(nodeModulesRealDir, '.package-lock.json')].map((path) => statSync(path, { throwIfNoEntry: false })?.mtimeMs ?? 0);
    return createHash('sha256').update(`${nodeModulesRealDir}\0${templateType}\0${changed.join('\0')}`).digest('hex').slice(0, 16);
  }

  has(key: string): boolean {
    return existsSync(join(this.depsDir(key), METADATA_FILE));
  }

  /**
   * Copies the key's bundles into `<cacheDir>/deps` of a machine about to start, owned by
   * its user (Vite replaces the folder when it bundles afresh); false when there is none yet.
   */
  async seed(key: string, cacheDir: string, owner?: { uid: number; gid: number }): Promise<boolean> {
    if (!this.has(key)) return false;
    const target = join(cacheDir, 'deps');
    await mkdir(cacheDir, { recursive: true });
    await cp(this.depsDir(key), target, { recursive: true });
    if (owner) await chownTree(cacheDir, owner);
    return true;
  }

  /** Keeps a machine's finished `<cacheDir>/deps` as the key's bundles (the first kept stays); false when it has none. */
  async keep(key: string, cacheDir: string): Promise<boolean> {
    const source = join(cacheDir, 'deps');
    if (!existsSync(join(source, METADATA_FILE))) return false;
    if (this.has(key)) return true;
    const staging = join(this.dir, `.${key}-${randomBytes(4).toString('hex')}`);
    await mkdir(join(staging, 'deps'), { recursive: true });
    try {
      await cp(source, join(staging, 'deps'), { recursive: true });
      // Whole, at once: a machine seeded meanwhile copies the old state or the new, never half.
      await rename(staging, join(this.dir, key)).catch((err: NodeJS.ErrnoException) => {
        if (err.code !== 'ENOTEMPTY' && err.code !== 'EEXIST') throw err;
      });
      return true;
    } finally {
      await rm(staging, { recursive: true, force: true });
    }
  }

  private depsDir(key: string): string {
    return join(this.dir, key, 'deps');
  }
}

/** Vite writes it last, when a bundling is complete. */
const METADATA_FILE = '_metadata.json';

async function chownTree(dir: string, owner: { uid: number; gid: number }): Promise<void> {
  await chown(dir, owner.uid, owner.gid);
  for (const entry of await readdir(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) await chownTree(path, owner);
    else await chown(path, owner.uid, owner.gid);
  }
}
