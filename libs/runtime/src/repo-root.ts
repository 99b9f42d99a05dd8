import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';

/**
 * The repository's root: the nearest folder at or above `from` whose
 * package.json declares the npm workspaces. One answer whether the caller runs
 * from its sources (libs/x/src) or from the build (dist/libs/x/src), which sits
 * one folder deeper.
 */
export function repoRootOf(from: string): string {
  for (let dir = from; ; dir = dirname(dir)) {
    if (declaresWorkspaces(join(dir, 'package.json'))) return dir;
    if (dirname(dir) === dir) throw new Error(`No package.json with "workspaces" at or above ${from}: not inside the repository`);
  }
}

function declaresWorkspaces(packageJson: string): boolean {
  try {
    return Array.isArray(JSON.parse(readFileSync(packageJson, 'utf8')).workspaces);
  } catch {
    return false;
  }
}
