import { createHash } from 'node:crypto';
import { z } from 'zod';
import { ConfigError } from './config';
import { fileBytes, projectFileSchema, type ProjectFile } from './project-files';
import { tierSchema, type Tier } from './queues';
import { packageNameOf } from './package-names';

/**
 * What a warm-pool machine for projects with dependencies of their own starts
 * on: the installed dependency set, and the project's files that decide how
 * Vite starts (package.json, vite/postcss/tailwind/svelte configs, tsconfigs,
 * .env files). None of the project's sources: a machine started on one
 * project's profile is claimed by any project with the same profile, whose
 * files it then holds, so the profile is exactly what they share.
 */
export interface DependencyProfile {
  /** Hash of the template, tier, dependency set and start files. */
  key: string;
  templateType: string;
  tier: Tier;
  dependencies: { key: string; nodeModulesDir: string };
  files: ProjectFile[];
  /**
   * Packages the last project of this profile imports from its sources, which a
   * pooled machine pre-bundles before it is claimed (a hint: a project that
   * imports others gets those bundled when it loads them).
   */
  optimizeDeps: string[];
}

export const dependencyProfileSchema = z.object({
  key: z.string().regex(/^[0-9a-f]{64}$/),
  templateType: z.string().min(1),
  tier: tierSchema,
  dependencies: z.object({ key: z.string().min(1), nodeModulesDir: z.string().min(1) }),
  files: z.array(projectFileSchema),
  optimizeDeps: z.array(z.string()),
});

/** Start files above this, together, make no profile (they travel in the machine's environment). */
export const PROFILE_FILES_MAX_BYTES = 48 * 1024;
/** At most this many packages are pre-bundled ahead of a claim. */
const OPTIMIZE_DEPS_MAX = 100;

/** Root files that decide how Vite starts: it restarts when one changes. Lockfiles are in the set's key already. */
const START_FILE = /^(?:package\.json|(?:vite|postcss|tailwind|svelte|babel)\.config\.[cm]?[jt]s|\.postcssrc(?:\.[a-z]+)?|\.babelrc(?:\.[a-z]+)?|[jt]sconfig(?:\.[\w-]+)?\.json|\.env(?:\.[\w.-]+)?)$/;
const SOURCE_FILE = /\.(?:[cm]?[jt]sx?|vue|svelte)$/;
/** Specifiers in import and export statements and dynamic imports; `import type` is left out below. */
const IMPORT_SPECIFIER = /(?:\bimport|\bexport)(\s+type\b)?(?:[\s\w${},*]*?\bfrom)?\s*["']([^"'\n]+)["']|\bimport\s*\(\s*["']([^"'\n]+)["']\s*\)/g;
/** Imports that are no JavaScript module to pre-bundle (styles, assets, raw text). */
const NOT_JS = /\.(?:css|scss|sass|less|styl|svg|png|jpe?g|gif|webp|avif|ico|woff2?|ttf|otf|json|wasm|html?)$|\?/;

/**
 * The profile of a project whose dependency set is installed at `dependencies`,
 * or null when its start files are too large to travel with a machine.
 */
export function dependencyProfileOf(input: {
  templateType: string;
  tier: Tier;
  dependencies: { key: string; nodeModulesDir: string };
  files: readonly ProjectFile[];
}): DependencyProfile | null {
  const files = startFilesOf(input.files);
  if (files.reduce((sum, file) => sum + fileBytes(file).length, 0) > PROFILE_FILES_MAX_BYTES) return null;
  const hash = createHash('sha256').update(JSON.stringify([input.templateType, input.tier, input.dependencies.key]));
  for (const file of files) hash.update(`\0${file.path}\0`).update(fileBytes(file));
  return {
    key: hash.digest('hex'),
    templateType: input.templateType,
    tier: input.tier,
    dependencies: input.dependencies,
    files,
    optimizeDeps: importedPackagesOf(input.files),
  };
}

/** The project's files that decide how Vite starts, in path order. */
export function startFilesOf(files: readonly ProjectFile[]): ProjectFile[] {
  return files.filter((file) => START_FILE.test(file.path)).sort((a, b) => (a.path < b.path ? -1 : 1));
}

/**
 * Bare specifiers of packages the project's sources import at run time and its
 * package.json declares (aliases such as `@/components` are not packages).
 */
export function importedPackagesOf(files: readonly ProjectFile[]): string[] {
  const declared = declaredPackagesOf(files);
  const found = new Set<string>();
  for (const file of files) {
    if (!SOURCE_FILE.test(file.path) || START_FILE.test(file.path) || file.encoding === 'base64') continue;
    for (const match of file.content.matchAll(IMPORT_SPECIFIER)) {
      const specifier = match[2] ?? match[3];
      if (match[1] || !specifier || NOT_JS.test(specifier)) continue;
      const name = packageNameOf(specifier);
      if (name && declared.has(name) && !name.startsWith('@types/')) found.add(specifier);
    }
  }
  return [...found].sort().slice(0, OPTIMIZE_DEPS_MAX);
}

function declaredPackagesOf(files: readonly ProjectFile[]): Set<string> {
  const packageJson = files.find((file) => file.path === 'package.json');
  if (!packageJson) return new Set();
  try {
    const parsed = JSON.parse(fileBytes(packageJson).toString('utf8')) as Record<string, unknown>;
    const fields = [parsed.dependencies, parsed.devDependencies].filter((field): field is Record<string, unknown> => typeof field === 'object' && field !== null);
    return new Set(fields.flatMap((field) => Object.keys(field)));
  } catch {
    return new Set();
  }
}


/** How many profiles the warm pool keeps machines for, and how many each. */
export interface DependencyPoolSize {
  sets: number;
  machinesPerSet: number;
}

/** DEPENDENCY_POOL: `<sets>x<machines>`, e.g. `4x1`: machines kept ready for each of the most recently used profiles. Empty: none. */
export function parseDependencyPool(value: string | undefined): DependencyPoolSize {
  if (!value) return { sets: 0, machinesPerSet: 0 };
  const match = value.trim().match(/^(\d+)x(\d+)$/);
  if (!match) throw new ConfigError('DEPENDENCY_POOL', `has "${value}"; write <sets>x<machines per set>, e.g. 4x1`);
  return { sets: Number(match[1]), machinesPerSet: Number(match[2]) };
}

/** Environment variables that carry a profile to its pooled machine. */
export const START_FILES_ENV = 'START_FILES';
export const OPTIMIZE_DEPS_ENV = 'OPTIMIZE_DEPS';

/** A pooled machine's environment for its profile: the start files (base64 of their JSON) and the packages to pre-bundle. */
export function profileMachineEnv(profile: Pick<DependencyProfile, 'files' | 'optimizeDeps'>): Record<string, string> {
  return {
    [START_FILES_ENV]: Buffer.from(JSON.stringify(profile.files)).toString('base64'),
    [OPTIMIZE_DEPS_ENV]: JSON.stringify(profile.optimizeDeps),
  };
}
