/**
 * `npm run test-registry` (= `... scripts/test-registry.ts prepare`): fills the
 * test registry's storage (.velocity/test-registry/<hash>/storage) once, like
 * `npm ci`, from the public registry, so that tests install users' projects
 * from a local Verdaccio without network (libs/testing/src/test-registry.ts).
 *
 * It runs Verdaccio with an uplink to registry.npmjs.org and installs every
 * fixture project and every create-vite template through it, each into a temp
 * folder with a temp npm cache (the host's cache would skip Verdaccio); a
 * project with a pnpm, yarn or bun lockfile is installed by the provisioner's
 * own installer for it, which fetches exactly what the lockfile names. npm
 * asks for the packument of every optional dependency, other platforms' too,
 * so Verdaccio stores those as well. Then it trims the packuments to the
 * versions used (trimPackuments) and, before marking the storage complete,
 * checks it from Verdaccio without uplink (checkOffline).
 * A no-op when the marker exists.
 */
import { createHash } from 'node:crypto';
import { closeSync, existsSync, mkdirSync, mkdtempSync, openSync, readFileSync, readdirSync, renameSync, rmSync, writeFileSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { dependencySetOf, lockedPackagesOf, type InstallSet } from '@velocity/contracts';
import { installDependencies, managerCacheOf } from '../apps/provisioner/src/dependencies/installers/index';
import { CREATE_VITE_TEMPLATES, CREATE_VITE_VERSION, EXPECTED_INSTALL_FAILURES, createViteTemplateFiles, fixtureProjectFiles, fixtureProjectNames, folderSize, isPrepared, markPrepared, runNpm, runVerdaccio, serveOffline, storageDirOf, testRegistryDir, writeProjectFiles, type ProjectFile, type RunningRegistry } from '@velocity/testing';

const log = (message: string) => console.log(`[test-registry] ${message}`);
const seconds = (ms: number) => `${(ms / 1000).toFixed(1)} s`;
/** Installs at once: npm is mostly waiting on the network, the host has 2 cores. */
const CONCURRENCY = 3;

interface Target {
  name: string;
  files: () => Promise<ProjectFile[]>;
}

export async function prepareTestRegistry(dir = testRegistryDir()): Promise<void> {
  const shown = dir;
  if (isPrepared(dir)) return log(`${shown} is prepared already; nothing to do`);
  mkdirSync(dir, { recursive: true });
  if (!(await takeLock(dir))) return log(`${shown} was prepared by another process meanwhile`);
  const started = Date.now();
  const work = mkdtempSync(join(tmpdir(), 'vp-test-registry-prepare-'));
  const storage = storageDirOf(dir);
  let registry: RunningRegistry | undefined;
  try {
    log(`preparing ${shown}: Verdaccio with an uplink to https://registry.npmjs.org/, storage ${storage}`);
    registry = await runVerdaccio({ storage, workDir: join(dir, 'prepare'), uplink: true });
    const cache = join(work, 'cache');

    // create-vite's tarball is the source of the template fixtures.
    const pack = await runNpm(['pack', `create-vite@${CREATE_VITE_VERSION}`], { cwd: work, registry: registry.url, cache });
    if (pack.code !== 0) throw new Error(`npm pack create-vite@${CREATE_VITE_VERSION} failed:\n${pack.stderr}`);
    log(`fetched create-vite@${CREATE_VITE_VERSION} (${seconds(pack.ms)})`);

    const targets: Target[] = [
      ...fixtureProjectNames().map((name) => ({ name, files: () => fixtureProjectFiles(name) })),
      ...CREATE_VITE_TEMPLATES.map((name) => ({ name: `create-vite/${name}`, files: () => createViteTemplateFiles(name, storage) })),
    ];
    const installed = await installAll(targets, registry.url, join(work, 'online'), cache, 'install', 'through the uplink');
    await registry.stop();
    registry = undefined;
    trimPackuments(storage, [...installed.values()].map((result) => result.lock));

    // The proof that tests need no network, from Verdaccio without uplink and a new cache: every
    // project resolves to the same versions (all packuments are there), and every tarball those
    // installs fetched is served with its integrity. Cheaper than installing everything again.
    const offline = await serveOffline(storage);
    try {
      const resolved = await installAll(targets, offline.url, join(work, 'offline'), join(work, 'offline-cache'), 'resolve', 'offline, from a new cache');
      await checkOffline(installed, resolved, offline.url);
    } finally {
      await offline.stop();
    }

    const size = folderSize(storage);
    markPrepared(dir, { targets: targets.map((t) => t.name), storageBytes: size.bytes, storageFiles: size.files, prepareMs: Date.now() - started });
    log(`done in ${seconds(Date.now() - started)}: storage ${(size.bytes / 1e6).toFixed(1)} MB in ${size.files} files`);
  } finally {
    await registry?.stop();
    rmSync(work, { recursive: true, force: true });
    releaseLock(dir);
  }
}

type Lock = Record<string, { name?: string; version?: string; resolved?: string; integrity?: string; link?: boolean }>;
interface Result {
  /** package-lock.json: what npm resolved, other platforms' packages too. */
  lock: Lock;
  /** node_modules/.package-lock.json: what it installed (install mode). */
  installed: Lock;
}

/** Installs (or only resolves: `npm install --package-lock-only`) each target, checking the expected failures. */
async function installAll(targets: Target[], registry: string, root: string, cache: string, mode: 'install' | 'resolve', how: string): Promise<Map<string, Result>> {
  const started = Date.now();
  const queue = [...targets];
  const failures: string[] = [];
  const results = new Map<string, Result>();
  const worker = async () => {
    for (let target = queue.shift(); target; target = queue.shift()) {
      const project = join(root, target.name, 'project');
      const files = await target.files();
      writeProjectFiles(project, files);
      const managed = managedSetOf(files);
      if (managed) {
        const result = await installWithManager(managed, project, registry, cache);
        if (result.error) failures.push(`${managed.manager} install ${target.name}: ${result.error}`);
        else log(`  ${managed.manager} install ${target.name}: ${seconds(result.ms)}`);
        results.set(target.name, { lock: lockOf(managed), installed: {} });
        rmSync(join(root, target.name), { recursive: true, force: true });
        continue;
      }
      const args = mode === 'resolve' ? ['install', '--package-lock-only'] : files.some((f) => f.path === 'package-lock.json') ? ['ci'] : ['install'];
      const command = `npm ${args.join(' ')} ${target.name}`;
      const result = await runNpm(args, { cwd: project, registry, cache });
      const expected = EXPECTED_INSTALL_FAILURES[target.name];
      if (!expected && result.code === 0) {
        log(`  ${command}: ${seconds(result.ms)}`);
        const read = (file: string): Lock => (existsSync(join(project, file)) ? JSON.parse(readFileSync(join(project, file), 'utf8')).packages : {});
        results.set(target.name, { lock: read('package-lock.json'), installed: read('node_modules/.package-lock.json') });
      } else if (expected && result.code !== 0 && expected.test(result.stderr)) {
        log(`  ${command}: failed as expected (${expected.source}), ${seconds(result.ms)}`);
      } else {
        const output = result.stderr.trim().split('\n').slice(-15).join('\n');
        failures.push(`${command} (exit ${result.code}${expected ? `, expected a failure matching ${expected}` : ''}):\n${output}`);
      }
      rmSync(join(root, target.name), { recursive: true, force: true });
    }
  };
  log(`${mode === 'resolve' ? 'resolving' : 'installing'} ${targets.length} projects ${how}`);
  await Promise.all(Array.from({ length: CONCURRENCY }, worker));
  if (failures.length > 0) throw new Error(`${failures.length} of ${targets.length} failed ${how}:\n${failures.join('\n\n')}`);
  log(`${mode === 'resolve' ? 'resolved' : 'installed'} ${targets.length} projects ${how} in ${seconds(Date.now() - started)}`);
  return results;
}

/** The set of a project whose lockfile another package manager than npm reads, or undefined. */
function managedSetOf(files: ProjectFile[]): InstallSet | undefined {
  const set = dependencySetOf(
    files.map((file) => ({ path: file.path, content: file.content.toString('utf8') })),
    () => undefined,
  );
  return set.kind === 'install' && set.manager !== 'npm' ? set : undefined;
}

/**
 * Installs a set as the provisioner does (its frozen install fetches what the
 * lockfile names and nothing else), in the project's folder, with this
 * registry and a cache of this run. Offline, the same install from a new cache
 * is the proof that the storage holds all of it.
 */
async function installWithManager(set: InstallSet, project: string, registry: string, cache: string): Promise<{ ms: number; error?: string }> {
  const started = Date.now();
  const dir = join(project, '..', 'installed');
  mkdirSync(dir, { recursive: true });
  try {
    await installDependencies(set, { dir, registry, cacheDir: `${cache}-${managerCacheOf(set).slice(1)}`, signal: AbortSignal.timeout(300_000) });
    return { ms: Date.now() - started };
  } catch (error) {
    return { ms: Date.now() - started, error: (error as Error).message };
  }
}

/** A lockfile's packages as npm's lockfile names them, for trimPackuments. */
function lockOf(set: InstallSet): Lock {
  return Object.fromEntries(lockedPackagesOf(set.lockfile!.file, set.lockfile!.content).map((locked) => [locked.entry, { name: locked.name, version: locked.version }]));
}

/** Offline resolution gave every installed version, and the offline registry serves every installed tarball intact. */
async function checkOffline(installed: Map<string, Result>, resolved: Map<string, Result>, registry: string): Promise<void> {
  const started = Date.now();
  const problems: string[] = [];
  const tarballs = new Map<string, string>();
  for (const [name, result] of installed) {
    for (const [key, pkg] of Object.entries(result.installed)) {
      if (!pkg.resolved || !pkg.integrity) continue;
      const offline = resolved.get(name)?.lock[key]?.version;
      if (offline !== pkg.version) problems.push(`${name}: ${key} resolved offline to ${offline}, installed ${pkg.version}`);
      tarballs.set(new URL(pkg.resolved).pathname, pkg.integrity);
    }
  }
  const queue = [...tarballs];
  const fetchOne = async () => {
    for (let next = queue.shift(); next; next = queue.shift()) {
      const [path, integrity] = next;
      const response = await fetch(new URL(path.slice(1), registry));
      const body = Buffer.from(await response.arrayBuffer());
      const [algorithm, digest] = integrity.split('-', 2) as [string, string];
      if (!response.ok) problems.push(`GET ${path}: ${response.status}`);
      else if (createHash(algorithm).update(body).digest('base64') !== digest) problems.push(`GET ${path}: integrity mismatch`);
    }
  };
  await Promise.all(Array.from({ length: 8 }, fetchOne));
  if (problems.length > 0) throw new Error(`the storage is incomplete offline:\n${problems.slice(0, 30).join('\n')}`);
  log(`offline: same versions resolved, ${tarballs.size} tarballs served intact (${seconds(Date.now() - started)})`);
}

/**
 * Shrinks every packument in storage to the versions the projects' lockfiles
 * name (other platforms' too) plus `latest`. The public registry's packuments
 * are most of the storage (typescript's and @types/node's are 12 MB each, with
 * thousands of versions), and Verdaccio and npm parse them whole at every
 * install: trimmed, a test install is about 3 times faster. Resolution stays
 * the same, as npm picks the highest version in range and that is one we keep
 * (a failing project fails the same way: no version in range, or none at all);
 * checkOffline proves it.
 */
function trimPackuments(storage: string, locks: Lock[]): void {
  const keep = new Map<string, Set<string>>();
  for (const lock of locks) {
    for (const [key, pkg] of Object.entries(lock)) {
      if (!key || pkg.link || !pkg.version) continue;
      const name = pkg.name ?? key.slice(key.lastIndexOf('node_modules/') + 'node_modules/'.length);
      keep.set(name, (keep.get(name) ?? new Set()).add(pkg.version));
    }
  }
  let before = 0;
  let after = 0;
  const files = readdirSync(storage, { recursive: true, withFileTypes: true }).filter((e) => e.isFile() && e.name === 'package.json');
  for (const entry of files) {
    const file = join(entry.parentPath, entry.name);
    const text = readFileSync(file, 'utf8');
    const doc = JSON.parse(text);
    const kept = new Set([...(keep.get(doc.name) ?? []), doc['dist-tags']?.latest]);
    for (const version of Object.keys(doc.versions ?? {})) {
      if (kept.has(version)) continue;
      delete doc.versions[version];
      if (doc.time) delete doc.time[version];
    }
    doc['dist-tags'] = Object.fromEntries(Object.entries(doc['dist-tags'] ?? {}).filter(([, version]) => kept.has(version as string)));
    const trimmed = JSON.stringify(doc, null, '\t');
    writeFileSync(`${file}.trim`, trimmed);
    renameSync(`${file}.trim`, file);
    before += text.length;
    after += trimmed.length;
  }
  log(`trimmed ${files.length} packuments to the versions used: ${(before / 1e6).toFixed(1)} MB -> ${(after / 1e6).toFixed(1)} MB`);
}

/** One prepare per storage at a time: others wait for it (a dead holder's lock is taken over). */
async function takeLock(dir: string): Promise<boolean> {
  const lock = join(dir, 'prepare.lock');
  for (;;) {
    try {
      const fd = openSync(lock, 'wx');
      writeSync(fd, String(process.pid));
      closeSync(fd);
      return true;
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
    }
    const holder = Number(readFileIfAny(lock));
    if (!holder) {
      // Just created, its pid not yet written (or just removed): look again.
      await new Promise((r) => setTimeout(r, 200));
      continue;
    }
    if (!isAlive(holder)) {
      rmSync(lock, { force: true });
      continue;
    }
    log(`another prepare (pid ${holder}) is running; waiting for it`);
    while (isAlive(holder) && existsSync(lock)) await new Promise((r) => setTimeout(r, 1_000));
    if (isPrepared(dir)) return false;
  }
}

function releaseLock(dir: string): void {
  const lock = join(dir, 'prepare.lock');
  if (readFileIfAny(lock) === String(process.pid)) rmSync(lock);
}

function readFileIfAny(file: string): string {
  try {
    return readFileSync(file, 'utf8').trim();
  } catch {
    return '';
  }
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return pid > 0;
  } catch {
    return false;
  }
}

if (require.main === module) {
  if (process.argv[2] !== 'prepare') {
    console.error('usage: node -r @swc-node/register scripts/test-registry.ts prepare');
    process.exit(2);
  }
  prepareTestRegistry().then(
    () => process.exit(0),
    (error: Error) => {
      console.error(`[test-registry] prepare failed: ${error.message}`);
      process.exit(1);
    },
  );
}
