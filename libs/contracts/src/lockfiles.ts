import { valid as validVersion, validRange } from 'semver';
import { parse as parseYaml } from 'yaml';
import { PermanentError } from './errors';

/** One package a lockfile pins, and whether a registry serves it. */
export interface LockedPackage {
  /** The lockfile's own name for the entry (its key), for messages. */
  entry: string;
  /** The package's name in the registry (an alias's target). */
  name: string;
  version: string;
  /** What the entry comes from when it is not a registry (a link, a folder, git, a tarball URL); absent for a registry package. */
  notFromRegistry?: string;
}

/**
 * The packages a lockfile pins, read from its text. A lockfile that cannot be
 * read is a PermanentError naming the file: the user can fix it.
 */
export function lockedPackagesOf(file: string, content: string): LockedPackage[] {
  switch (file) {
    case 'package-lock.json':
      return npmLockedPackages(parseWith(file, 'JSON', () => JSON.parse(content)));
    case 'pnpm-lock.yaml':
      return pnpmLockedPackages(parseWith(file, 'YAML', () => parseYaml(content) ?? {}));
    case 'yarn.lock':
      return isYarnBerryLockfile(content) ? yarnBerryLockedPackages(parseWith(file, 'YAML', () => parseYaml(content) ?? {})) : yarnClassicLockedPackages(content);
    case 'bun.lock':
      return bunLockedPackages(parseWith(file, 'JSON', () => parseJsonWithTrailingCommas(content) as BunLock));
    default:
      throw new Error(`not a lockfile: ${file}`);
  }
}

/** Yarn 2+ ("berry") writes a `__metadata` entry; yarn 1 ("classic") a `# yarn lockfile v1` header and no metadata. */
export function isYarnBerryLockfile(content: string): boolean {
  return /^__metadata:/m.test(content);
}

/** A registry tarball URL's package name and its path from the name on (`@scope/name/-/name-1.0.0.tgz`), or undefined for any other URL. */
export function registryTarballOf(url: string): { name: string; path: string } | undefined {
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    return undefined;
  }
  if (parsed.protocol !== 'http:' && parsed.protocol !== 'https:') return undefined;
  const segments = parsed.pathname.split('/');
  const dash = segments.lastIndexOf('-');
  if (dash < 2 || dash !== segments.length - 2 || !segments[dash + 1].endsWith('.tgz')) return undefined;
  const scoped = segments[dash - 2]?.startsWith('@');
  const name = scoped ? `${segments[dash - 2]}/${segments[dash - 1]}` : decodeURIComponent(segments[dash - 1]);
  if (!/^(@[^/]+\/)?[^/@]+$/.test(name)) return undefined;
  return { name, path: `${name}/-/${segments[dash + 1]}` };
}

/** Only what a registry serves: a version, a range, a dist-tag, or an `npm:` alias of those. */
export function isRegistrySpec(spec: string): boolean {
  const target = spec.startsWith('npm:') ? spec.slice(spec.lastIndexOf('@') > 4 ? spec.lastIndexOf('@') + 1 : spec.length) : spec;
  const isTag = /^[a-z][a-z0-9._-]*$/i.test(target) && !/^(file|link|git|github|http|https|workspace|portal|patch)$/i.test(target);
  return target === '' || validRange(target) !== null || isTag;
}

function parseWith<T>(file: string, format: string, parse: () => T): T {
  try {
    return parse();
  } catch (error) {
    throw new PermanentError(`${file} is not valid ${format}: ${(error as Error).message.split('\n')[0]}`);
  }
}

/** `name@spec` split at the `@` that is not a scope's. */
function splitAt(nameAtSpec: string): [name: string, spec: string] {
  const at = nameAtSpec.indexOf('@', 1);
  return at < 0 ? [nameAtSpec, ''] : [nameAtSpec.slice(0, at), nameAtSpec.slice(at + 1)];
}

type NpmLock = { packages?: Record<string, { name?: string; version?: string; link?: boolean; resolved?: string }> };

/** package-lock.json: npm fetches every `resolved` URL from the configured registry (`--replace-registry-host`); links and folders are not. */
function npmLockedPackages(lock: NpmLock): LockedPackage[] {
  return Object.entries(lock.packages ?? {})
    .filter(([path]) => path !== '')
    .map(([path, entry]) => ({
      entry: path,
      name: entry.name ?? path.slice(path.lastIndexOf('node_modules/') + 'node_modules/'.length),
      version: entry.version ?? '',
      notFromRegistry: entry.link || (entry.resolved !== undefined && !/^https?:\/\//.test(entry.resolved)) ? (entry.resolved ?? 'a link') : undefined,
    }));
}

type PnpmDependencies = Record<string, string | { specifier?: string; version?: string }>;
type PnpmImporter = Record<string, PnpmDependencies | undefined>;
type PnpmLock = PnpmImporter & {
  importers?: Record<string, PnpmImporter>;
  packages?: Record<string, { resolution?: { integrity?: string; tarball?: string; type?: string; repo?: string; directory?: string } } | null>;
};

/** pnpm-lock.yaml (v6 and v9): a registry package's resolution is its integrity alone; pnpm builds its URL from the configured registry. */
function pnpmLockedPackages(lock: PnpmLock): LockedPackage[] {
  const locked: LockedPackage[] = [];
  // A v6 lockfile of one project has its dependencies at the top, not under `importers`.
  for (const [importer, fields] of Object.entries(lock.importers ?? { '.': lock })) {
    if (importer !== '.') locked.push({ entry: importer, name: importer, version: '', notFromRegistry: 'a workspace package' });
    for (const field of ['dependencies', 'devDependencies', 'optionalDependencies']) {
      for (const [name, dependency] of Object.entries(fields?.[field] ?? {})) {
        const version = typeof dependency === 'string' ? dependency : (dependency?.version ?? '');
        if (/^(link|file):/.test(version)) locked.push({ entry: `${name}@${version}`, name, version, notFromRegistry: version });
      }
    }
  }
  for (const [key, entry] of Object.entries(lock.packages ?? {})) {
    // v6 keys start with `/` and v6 and v9 keys may end with peers: `/fdir@6.5.0(picomatch@4.0.7)`.
    const [name, version] = splitAt(key.replace(/^\//, '').replace(/\(.*$/, ''));
    const resolution = entry?.resolution ?? {};
    const source = resolution.tarball ?? (resolution.repo ? `git ${resolution.repo}` : resolution.directory ? `folder ${resolution.directory}` : resolution.type);
    const isRegistry = source === undefined && resolution.integrity !== undefined;
    locked.push({ entry: key, name, version, notFromRegistry: isRegistry ? undefined : (source ?? 'no integrity') });
  }
  return locked;
}

/**
 * yarn.lock v1: every entry has a `resolved` URL that yarn fetches as it is, so
 * only registry tarball URLs pass (the installer sends them to the configured
 * registry); the patterns must be registry specs too (no file:, link:, portal:,
 * patch:, git or URL).
 */
function yarnClassicLockedPackages(content: string): LockedPackage[] {
  const locked: LockedPackage[] = [];
  for (const { key, fields } of yarnClassicEntries(content)) {
    const patterns = key.split(/,\s*/).map(unquote);
    const [alias, spec] = splitAt(patterns[0]);
    const name = spec.startsWith('npm:') ? splitAt(spec.slice(4))[0] : alias;
    const outside = patterns.map((pattern) => splitAt(pattern)[1]).find((patternSpec) => !isRegistrySpec(patternSpec));
    const resolved = fields.get('resolved');
    const tarball = resolved === undefined ? undefined : registryTarballOf(resolved);
    const notFromRegistry = outside ?? (resolved === undefined ? 'no resolved URL' : tarball?.name !== name ? resolved : undefined);
    locked.push({ entry: patterns.join(', '), name, version: fields.get('version') ?? '', notFromRegistry });
  }
  return locked;
}

/** The entries of a yarn v1 lockfile: a key line (`"a@^1", a@^1.2:`) and its two-space-indented fields. */
function yarnClassicEntries(content: string): Array<{ key: string; fields: Map<string, string> }> {
  const entries: Array<{ key: string; fields: Map<string, string> }> = [];
  for (const line of content.split(/\r?\n/)) {
    if (line.trim() === '' || line.startsWith('#')) continue;
    if (!line.startsWith(' ')) entries.push({ key: line.replace(/:\s*$/, ''), fields: new Map() });
    else {
      const field = /^ {2}([^\s"]+|"[^"]+")\s+(.*)$/.exec(line);
      if (field && entries.length > 0) entries[entries.length - 1].fields.set(unquote(field[1]), unquote(field[2]));
    }
  }
  return entries;
}

function unquote(text: string): string {
  const trimmed = text.trim();
  return trimmed.startsWith('"') && trimmed.endsWith('"') ? trimmed.slice(1, -1) : trimmed;
}

type BerryLock = Record<string, { version?: string; resolution?: string } | undefined>;

/**
 * yarn.lock of yarn 2+: a registry package resolves to `name@npm:<version>`,
 * fetched from the configured registry; yarn's own built-in patches (TypeScript,
 * fsevents, resolve) apply to registry packages and pass too.
 */
function yarnBerryLockedPackages(lock: BerryLock): LockedPackage[] {
  const locked: LockedPackage[] = [];
  for (const [key, entry] of Object.entries(lock)) {
    if (key === '__metadata' || !entry?.resolution) continue;
    const [name, reference] = splitAt(entry.resolution);
    if (reference === 'workspace:.') continue; // the project itself
    const version = entry.version ?? '';
    const patched = /^patch:([^#]*)#(?:optional!)?builtin<[^>]+>(?:::.*)?$/.exec(reference)?.[1];
    const target = patched === undefined ? reference : splitAt(decodeURIComponent(patched))[1];
    const isRegistry = target.startsWith('npm:') && validVersion(target.slice(4)) !== null;
    const notFromRegistry = isRegistry ? undefined : reference.startsWith('workspace:') ? 'a workspace package' : reference;
    locked.push({ entry: key, name, version, notFromRegistry });
  }
  return locked;
}

type BunLock = { workspaces?: Record<string, unknown>; packages?: Record<string, unknown[]> };

/**
 * bun.lock: a registry package is `["name@<version>", "<registry or empty>", {…}, "<integrity>"]`
 * (the installer sends every one to the configured registry); any other
 * version (a folder, a link, git, a tarball URL, a workspace) is not.
 */
function bunLockedPackages(lock: BunLock): LockedPackage[] {
  const locked: LockedPackage[] = Object.keys(lock.workspaces ?? {})
    .filter((path) => path !== '')
    .map((path) => ({ entry: path, name: path, version: '', notFromRegistry: 'a workspace package' }));
  for (const [key, entry] of Object.entries(lock.packages ?? {})) {
    const [name, version] = splitAt(String(entry?.[0] ?? ''));
    const isRegistry = validVersion(version) !== null && typeof entry?.[3] === 'string';
    locked.push({ entry: key, name, version, notFromRegistry: isRegistry ? undefined : version || 'no version' });
  }
  return locked;
}

/** bun.lock is JSON with trailing commas (bun's JSONC): the commas before `}` or `]` go, strings stay as they are. */
export function parseJsonWithTrailingCommas(text: string): unknown {
  return JSON.parse(text.replace(/("(?:[^"\\]|\\.)*")|,(\s*[}\]])/g, (_match, string: string | undefined, closing: string | undefined) => string ?? closing ?? ''));
}
