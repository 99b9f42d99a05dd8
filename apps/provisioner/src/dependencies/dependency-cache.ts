import { randomBytes } from 'node:crypto';
import { mkdir, readFile, readdir, lstat, rename, rm, utimes, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { TIER_LIMITS, type InstallSet } from '@velocity/contracts';
import { InstallError, installDependencies, managerCacheOf, type InstallProgress } from './installers/index';

/** What the cache says of an installed set. */
export interface InstalledSet {
  key: string;
  /** The folder holding the set's `node_modules`. */
  dir: string;
  packages: number;
  bytes: number;
  /** Install time, ms (of the install that filled the cache). */
  ms: number;
  /** True when this call installed nothing. */
  cached: boolean;
}

export interface EnsureOptions {
  signal: AbortSignal;
  onProgress?: (progress: InstallProgress) => void;
}

/** The record written last into a set's folder: a folder without it is not a complete install. */
const MANIFEST = 'velocity-install.json';
/** The longest a session lives (the pro tier's 8 hours), and a day more. */
export const DEFAULT_KEEP_UNUSED_MS = Math.max(...Object.values(TIER_LIMITS).map((tier) => tier.maxDurationSeconds)) * 1000 + 24 * 3600 * 1000;
/** Bytes on disk are measured at most this often while an install runs. */
const MEASURE_EVERY_MS = 1_000;

/**
 * Installed dependency sets, one folder each under `root`, keyed by content
 * (`InstallSet.key`): a set installed once is used by every later session, on
 * any provisioner that shares the folder. An install goes into a folder of its
 * own and is renamed into place when complete, so a reader never sees half an
 * install and two installs of one set (here or elsewhere) cannot mix: the first
 * rename wins, the other is discarded.
 */
export class DependencyCache {
  private readonly running = new Map<string, Promise<InstalledSet>>();

  constructor(
    readonly root: string,
    private readonly registry: string,
    /** A set unused this long is removed (no live machine can still use it: longer than any session lives). */
    private readonly keepUnusedMs = DEFAULT_KEEP_UNUSED_MS,
  ) {}

  dirOf(key: string): string {
    return join(this.root, key);
  }

  /** The installed set, if the cache holds it complete. */
  async get(key: string): Promise<InstalledSet | null> {
    try {
      const manifest = JSON.parse(await readFile(join(this.dirOf(key), MANIFEST), 'utf8')) as Omit<InstalledSet, 'dir' | 'cached'>;
      // Its use is its age for eviction.
      const now = new Date();
      await utimes(join(this.dirOf(key), MANIFEST), now, now).catch(() => undefined);
      return { ...manifest, key, dir: this.dirOf(key), cached: true };
    } catch {
      return null;
    }
  }

  /** The set installed: from the cache, from an install in progress here, or installed now. */
  async ensure(set: InstallSet, options: EnsureOptions): Promise<InstalledSet> {
    const cached = await this.get(set.key);
    if (cached) return cached;
    let install = this.running.get(set.key);
    if (!install) {
      install = this.install(set, options).finally(() => this.running.delete(set.key));
      this.running.set(set.key, install);
    }
    return install;
  }

  private async install(set: InstallSet, { signal, onProgress }: EnsureOptions): Promise<InstalledSet> {
    const started = Date.now();
    const staging = join(this.root, `.installing-${set.key}-${randomBytes(4).toString('hex')}`);
    // Machines run as another, unprivileged user: they must be able to read the sets.
    await mkdir(this.root, { recursive: true, mode: 0o755 });
    await mkdir(staging, { mode: 0o755 });
    let packages = 0;
    let lastMeasure = 0;
    const report = async () => {
      lastMeasure = Date.now();
      onProgress?.({ packages, bytes: await bytesIn(join(staging, 'node_modules')) });
    };
    try {
      const added = await installDependencies(set, {
        dir: staging,
        registry: this.registry,
        cacheDir: join(this.root, managerCacheOf(set)),
        signal,
        onPackage: (count) => {
          packages = count;
          if (Date.now() - lastMeasure >= MEASURE_EVERY_MS) void report().catch(() => undefined);
        },
      });
      const bytes = await bytesIn(join(staging, 'node_modules'));
      const manifest = { key: set.key, packages: Math.max(added, packages), bytes, ms: Date.now() - started };
      onProgress?.({ packages: manifest.packages, bytes });
      await writeFile(join(staging, MANIFEST), JSON.stringify(manifest));
      await this.moveIntoPlace(staging, set.key);
      await this.evictUnused().catch(() => undefined);
      // Another install of the set may have got there first: what is in place is what machines use.
      const inPlace = await this.get(set.key);
      return { ...(inPlace ?? { ...manifest, dir: this.dirOf(set.key) }), cached: false };
    } catch (error) {
      await rm(staging, { recursive: true, force: true });
      throw error instanceof InstallError || signal.aborted ? error : new InstallError(`installing dependencies failed: ${(error as Error).message}`, undefined, true);
    }
  }

  /**
   * Removes the sets not used for `keepUnusedMs` (each use touches its manifest) and
   * installs left half done by a process that died; returns the folders removed.
   */
  async evictUnused(now = Date.now()): Promise<string[]> {
    const removed: string[] = [];
    for (const name of await readdir(this.root).catch(() => [] as string[])) {
      const dir = join(this.root, name);
      const last = name.startsWith('.installing-')
        ? (await lstat(dir).catch(() => null))?.mtimeMs
        : /^[0-9a-f]{32}$/.test(name)
          ? (await lstat(join(dir, MANIFEST)).catch(() => null))?.mtimeMs
          : undefined;
      if (last === undefined || now - last < this.keepUnusedMs) continue;
      // An install still running in this process is not left over.
      if (name.startsWith('.installing-') && [...this.running.keys()].some((key) => name.startsWith(`.installing-${key}-`))) continue;
      await rm(dir, { recursive: true, force: true });
      removed.push(name);
    }
    return removed;
  }

  /** Renames the finished install into place; when another install got there first, keeps that one. */
  private async moveIntoPlace(staging: string, key: string): Promise<void> {
    try {
      await rename(staging, this.dirOf(key));
    } catch (error) {
      const code = (error as NodeJS.ErrnoException).code;
      if (code !== 'ENOTEMPTY' && code !== 'EEXIST') throw error;
      await rm(staging, { recursive: true, force: true });
    }
  }
}

/** Bytes of the files under `dir` (0 when it does not exist yet). */
export async function bytesIn(dir: string): Promise<number> {
  let total = 0;
  let entries;
  try {
    entries = await readdir(dir, { withFileTypes: true });
  } catch {
    return 0;
  }
  for (const entry of entries) {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) total += await bytesIn(path);
    else if (entry.isFile()) total += (await lstat(path)).size;
  }
  return total;
}
