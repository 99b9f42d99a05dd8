import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { satisfies, validRange } from 'semver';
import { z } from 'zod';
import { PermanentError } from './errors';
import { isRegistrySpec, lockedPackagesOf } from './lockfiles';

export * from './lockfiles';

/**
 * What a project installs: its package.json's dependencies and its lockfile.
 * Two projects with the same set share one installed copy (keyed by content),
 * and a set the service's own node_modules already satisfies installs nothing.
 */
export type PackageManager = 'npm' | 'pnpm' | 'yarn' | 'bun';

/** Lockfiles by the package manager that reads them, in the order they are looked for. */
export const LOCKFILES: ReadonlyArray<{ file: string; manager: PackageManager }> = [
  { file: 'package-lock.json', manager: 'npm' },
  { file: 'pnpm-lock.yaml', manager: 'pnpm' },
  { file: 'yarn.lock', manager: 'yarn' },
  { file: 'bun.lock', manager: 'bun' },
];

/** The project files a dependency set is made of: the only ones the install step reads. */
export const DEPENDENCY_FILES: readonly string[] = ['package.json', ...LOCKFILES.map(({ file }) => file)];

/** The fields of package.json that decide what is installed; the rest (scripts, name...) does not. */
const DEPENDENCY_FIELDS = ['dependencies', 'devDependencies', 'optionalDependencies'] as const;
const RESOLUTION_FIELDS = ['overrides', 'resolutions', 'pnpm'] as const;

const specs = z.record(z.string(), z.string());
const packageJsonSchema = z.object({
  dependencies: specs.optional(),
  devDependencies: specs.optional(),
  optionalDependencies: specs.optional(),
  peerDependencies: specs.optional(),
  overrides: z.unknown().optional(),
  resolutions: z.unknown().optional(),
  pnpm: z.unknown().optional(),
  workspaces: z.unknown().optional(),
});
export type PackageJsonDependencies = z.infer<typeof packageJsonSchema>;

/** A set to install: what the installer is given, and the key of its installed copy. */
export interface InstallSet {
  kind: 'install';
  key: string;
  manager: PackageManager;
  /** package.json reduced to the fields that decide the install (no scripts, no name). */
  packageJson: PackageJsonDependencies;
  lockfile?: { file: string; content: string };
  /** `name@spec` of every direct dependency, for messages. */
  direct: string[];
}

export type DependencySet =
  /** No package.json: the template's dependencies (the service's own). */
  | { kind: 'none' }
  /** Every declared dependency is in the service's own node_modules at a version its range accepts. */
  | { kind: 'builtin' }
  | InstallSet;

export interface SetFile {
  path: string;
  content: string;
}

/** Version of each package in a node_modules folder, read on demand. */
export type InstalledVersion = (name: string) => string | undefined;

/** Reads `<dir>/<name>/package.json`'s version; undefined when absent or unreadable. */
export function installedVersionsIn(dir: string): InstalledVersion {
  const known = new Map<string, string | undefined>();
  return (name) => {
    if (!known.has(name)) {
      try {
        known.set(name, JSON.parse(readFileSync(join(dir, name, 'package.json'), 'utf8')).version);
      } catch {
        known.set(name, undefined);
      }
    }
    return known.get(name);
  };
}

/**
 * The dependency set of a project's root files. A package.json that is not
 * valid, or a dependency that is not from a registry, is a PermanentError whose
 * message names the file and the field: the user can fix it.
 */
export function dependencySetOf(files: readonly SetFile[], builtin: InstalledVersion, installerVersion = ''): DependencySet {
  const byPath = new Map(files.map((file) => [file.path, file.content]));
  const raw = byPath.get('package.json');
  if (raw === undefined) return { kind: 'none' };
  const packageJson = parsePackageJson(raw);
  const direct = directDependencies(packageJson);
  const lock = LOCKFILES.find(({ file }) => byPath.has(file));
  const lockfile = lock ? { file: lock.file, content: byPath.get(lock.file)! } : undefined;
  if (lockfile) checkLockfile(lockfile.file, lockfile.content);
  if (!lockfile && !hasResolutions(packageJson) && direct.every(([name, spec]) => isSatisfied(builtin(name), spec))) return { kind: 'builtin' };
  const installed: PackageJsonDependencies = pick(packageJson);
  const key = createHash('sha256')
    .update(JSON.stringify({ installed, lockfile: lockfile ?? null, manager: lock?.manager ?? 'npm', installerVersion, platform: `${process.platform}-${process.arch}` }))
    .digest('hex')
    .slice(0, 32);
  return { kind: 'install', key, manager: lock?.manager ?? 'npm', packageJson: installed, lockfile, direct: direct.map(([name, spec]) => `${name}@${spec}`) };
}

function parsePackageJson(raw: string): PackageJsonDependencies {
  let json: unknown;
  try {
    json = JSON.parse(raw);
  } catch (error) {
    throw new PermanentError(`package.json is not valid JSON: ${(error as Error).message}`);
  }
  const parsed = packageJsonSchema.safeParse(json);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    throw new PermanentError(`package.json: ${issue.path.join('.') || '(root)'} ${issue.message}`);
  }
  if (parsed.data.workspaces !== undefined) throw new PermanentError('package.json: workspaces are not supported in a preview (one package per project)');
  for (const field of [...DEPENDENCY_FIELDS, 'peerDependencies'] as const) {
    for (const [name, spec] of Object.entries(parsed.data[field] ?? {})) checkRegistrySpec(field, name, spec);
  }
  return parsed.data;
}

/** Only what a registry serves: a version, a range, a dist-tag, or an `npm:` alias of those. */
export function checkRegistrySpec(field: string, name: string, spec: string): void {
  if (isRegistrySpec(spec)) return;
  throw new PermanentError(
    `package.json: ${field}.${name} is "${spec}": only registry versions are installed in a preview (no file:, link:, git or URL dependencies)`,
  );
}

/**
 * A lockfile whose packages all come from a registry (the installer fetches
 * them from the configured one), checked before anything is installed.
 */
function checkLockfile(file: string, content: string): void {
  const outside = lockedPackagesOf(file, content).find((locked) => locked.notFromRegistry !== undefined);
  if (outside) {
    throw new PermanentError(`${file}: "${outside.entry}" is not from a registry (${outside.notFromRegistry}): only registry packages are installed in a preview`);
  }
}

function directDependencies(packageJson: PackageJsonDependencies): Array<[string, string]> {
  return DEPENDENCY_FIELDS.flatMap((field) => Object.entries(packageJson[field] ?? {}));
}

function hasResolutions(packageJson: PackageJsonDependencies): boolean {
  return RESOLUTION_FIELDS.some((field) => packageJson[field] !== undefined);
}

function isSatisfied(version: string | undefined, spec: string): boolean {
  if (version === undefined || spec.startsWith('npm:')) return false;
  return validRange(spec) !== null && satisfies(version, spec);
}

function pick(packageJson: PackageJsonDependencies): PackageJsonDependencies {
  const out: Record<string, unknown> = {};
  for (const field of [...DEPENDENCY_FIELDS, 'peerDependencies', ...RESOLUTION_FIELDS] as const) {
    if (packageJson[field] !== undefined) out[field] = packageJson[field];
  }
  return out as PackageJsonDependencies;
}
