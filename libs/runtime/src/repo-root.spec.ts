import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { repoRootOf } from './repo-root';

describe('repoRootOf', () => {
  let root: string;

  beforeAll(() => {
    root = mkdtempSync(join(tmpdir(), 'vp-repo-root-'));
    writeFileSync(join(root, 'package.json'), JSON.stringify({ name: 'repo', workspaces: ['apps/*', 'libs/*'] }));
    // A workspace's own package.json declares no workspaces: it is not the root.
    mkdirSync(join(root, 'libs/ops/src'), { recursive: true });
    writeFileSync(join(root, 'libs/ops/package.json'), JSON.stringify({ name: '@velocity/ops' }));
    mkdirSync(join(root, 'dist/libs/ops/src'), { recursive: true });
  });

  afterAll(() => rmSync(root, { recursive: true, force: true }));

  it('finds the root from a lib\'s sources and from its build under dist/', () => {
    expect(repoRootOf(join(root, 'libs/ops/src'))).toBe(root);
    expect(repoRootOf(join(root, 'dist/libs/ops/src'))).toBe(root);
  });

  it('throws outside any repository', () => {
    expect(() => repoRootOf(join(root, '..'))).toThrow(/No package.json with "workspaces"/);
  });
});
