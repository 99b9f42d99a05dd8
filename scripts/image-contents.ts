/**
 * What one app's image holds, put together in the `contents` stage of its Dockerfile (apps/<app>/Dockerfile):
 *
 *   node -r @swc-node/register scripts/image-contents.ts <app> --out /image [--with <app>] [--package <name>] [--template-dependencies]
 *
 * writes into --out the app's build (dist/apps/<app>), the builds of the libs it
 * requires (followed through the relative requires SWC writes for `@velocity/*`),
 * and a package.json whose dependencies are the packages that code requires,
 * installed there (`npm install --omit=dev --offline`, at the lockfile's versions,
 * from the build stage's npm cache). Nothing is listed by hand but what the code
 * does not name in a require:
 *   --with <app>                 another app's build and packages too (the provisioner runs the preview container)
 *   --package <name>             a package loaded by a name computed at run time (Nest's HTTP adapter, bun's binary)
 *   --template-dependencies      the packages the templates' package.json files name: the project's imports that
 *                                the preview container serves from its own node_modules (Vite, its plugins, React…)
 * A package the provisioner runs as a program is found where it looks it up, `servicePackageDir('<name>')`.
 */
import { execFileSync } from 'node:child_process';
import { cpSync, existsSync, mkdirSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { isBuiltin } from 'node:module';
import { dirname, join, relative, resolve, sep } from 'node:path';

interface Options {
  app: string;
  out: string;
  withApps: string[];
  packages: string[];
  templateDependencies: boolean;
}

/** `require("x")`, `require.resolve("x")`, and the provisioner's look-up of the package managers it runs. */
const REQUIRE = /\b(?:require(?:\.resolve)?|servicePackageDir\)?)\(\s*(["'`])([^"'`$]+)\1/g;
const DIST = 'dist';

function parseArgs(argv: string[]): Options {
  const options: Options = { app: '', out: '', withApps: [], packages: [], templateDependencies: false };
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    const value = () => argv[++i] ?? fail(`${arg} needs a value`);
    if (arg === '--out') options.out = resolve(value());
    else if (arg === '--with') options.withApps.push(value());
    else if (arg === '--package') options.packages.push(value());
    else if (arg === '--template-dependencies') options.templateDependencies = true;
    else if (!arg.startsWith('-') && !options.app) options.app = arg;
    else fail(`unknown argument ${arg}`);
  }
  if (!options.app || !options.out) fail('usage: image-contents.ts <app> --out <dir> [--with <app>] [--package <name>] [--template-dependencies]');
  return options;
}

function fail(message: string): never {
  console.error(`image-contents: ${message}`);
  process.exit(1);
}

/** `dist/libs/ops` for a file under it: builds are copied whole (a lib reads its own files, e.g. the templates). */
function projectOf(file: string): string | null {
  const parts = relative(DIST, file).split(sep);
  return parts.length > 2 && (parts[0] === 'apps' || parts[0] === 'libs') ? join(DIST, parts[0], parts[1]) : null;
}

function jsFilesIn(dir: string): string[] {
  return readdirSync(dir, { recursive: true, encoding: 'utf8' })
    .filter((name) => name.endsWith('.js'))
    .map((name) => join(dir, name))
    .filter((file) => statSync(file).isFile());
}

/** `@scope/name/sub/path` → `@scope/name`. */
function packageNameOf(specifier: string): string {
  const parts = specifier.split('/');
  return specifier.startsWith('@') ? parts.slice(0, 2).join('/') : parts[0];
}

/** The builds (app and libs) an app needs, and the packages their code requires, each with a file that requires it. */
function trace(apps: string[]): { projects: string[]; packages: Map<string, string> } {
  const projects = new Set(apps.map((app) => join(DIST, 'apps', app)));
  const packages = new Map<string, string>();
  const queue = [...projects];
  for (const project of queue) {
    if (!existsSync(project)) fail(`${project} is missing: run the build first`);
    for (const file of jsFilesIn(project)) {
      for (const [, , specifier] of readFileSync(file, 'utf8').matchAll(REQUIRE)) {
        if (specifier.startsWith('.')) {
          const target = projectOf(resolve(dirname(file), specifier));
          if (target && !projects.has(target)) {
            projects.add(target);
            queue.push(target);
          }
        } else if (!isBuiltin(specifier)) {
          const name = packageNameOf(specifier);
          if (!packages.has(name)) packages.set(name, file);
        }
      }
    }
  }
  return { projects: [...projects].sort(), packages };
}

/** Every package a template's package.json names: a template project imports them from the service's node_modules. */
function templatePackages(): string[] {
  const dir = join(DIST, 'libs', 'contracts', 'templates');
  return readdirSync(dir).flatMap((template) => {
    const manifest = JSON.parse(readFileSync(join(dir, template, 'package.json'), 'utf8'));
    return [...Object.keys(manifest.dependencies ?? {}), ...Object.keys(manifest.devDependencies ?? {})];
  });
}

/** The version node would load from the repository's root node_modules, as the lockfile records it. */
function lockedVersions(names: Iterable<string>, why: Map<string, string>): Record<string, string> {
  const lock = JSON.parse(readFileSync('package-lock.json', 'utf8'));
  const versions: Record<string, string> = {};
  for (const name of [...names].sort()) {
    const entry = lock.packages[`node_modules/${name}`];
    if (!entry || entry.dev) fail(`${name} (required by ${why.get(name)}) is not a production dependency in package-lock.json`);
    versions[name] = entry.version;
  }
  return versions;
}

function assemble(options: Options): void {
  const { projects, packages } = trace([options.app, ...options.withApps]);
  for (const name of options.packages) packages.set(name, '--package');
  if (options.templateDependencies) for (const name of templatePackages()) if (!packages.has(name)) packages.set(name, 'a template');
  const dependencies = lockedVersions(packages.keys(), packages);

  mkdirSync(options.out, { recursive: true });
  for (const project of projects) cpSync(project, join(options.out, project), { recursive: true });
  // `workspaces` marks the image's root for repoRootOf (libs/runtime), as it marks the repository's.
  const manifest = { name: `velocity-${options.app}-image`, private: true, workspaces: [], dependencies };
  writeFileSync(join(options.out, 'package.json'), `${JSON.stringify(manifest, null, 2)}\n`);
  cpSync('package-lock.json', join(options.out, 'package-lock.json'));
  execFileSync('npm', ['install', '--omit=dev', '--offline', '--ignore-scripts', '--no-audit', '--no-fund', '--loglevel=error'], { cwd: options.out, stdio: 'inherit' });
  console.log(`image-contents: ${options.app}: ${projects.join(', ')}; packages: ${Object.keys(dependencies).join(', ')}`);
}

assemble(parseArgs(process.argv.slice(2)));
