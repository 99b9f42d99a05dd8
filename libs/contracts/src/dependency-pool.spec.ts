import { ConfigError } from './config';
import { PROFILE_FILES_MAX_BYTES, dependencyProfileOf, importedPackagesOf, parseDependencyPool, profileMachineEnv, startFilesOf } from './dependency-pool';
import type { ProjectFile } from './project-files';

const packageJson = JSON.stringify({
  dependencies: { react: '^19.0.0', 'react-dom': '^19.0.0', '@tanstack/react-query': '^5.0.0', zustand: '^5.0.0' },
  devDependencies: { '@types/react': '^19.0.0', vite: '^8.0.0', 'lucide-react': '^0.500.0' },
});

const app: ProjectFile[] = [
  { path: 'package.json', content: packageJson },
  { path: 'vite.config.ts', content: "import react from '@vitejs/plugin-react';\nexport default { plugins: [react()] };" },
  { path: 'tsconfig.json', content: '{}' },
  { path: 'tsconfig.app.json', content: '{}' },
  { path: '.env.local', content: 'VITE_API=http://x' },
  { path: 'index.html', content: '<script type="module" src="/src/main.tsx"></script>' },
  {
    path: 'src/main.tsx',
    content: [
      "import { createRoot } from 'react-dom/client';",
      "import type { FC } from 'react';",
      "import App from './App';",
      "import '@/styles.css';",
      "import 'zustand/middleware';",
      "import logo from './logo.svg';",
      "import data from 'react-dom/package.json';",
      "export { QueryClient } from '@tanstack/react-query';",
      "const Lazy = () => import('lucide-react');",
      "import { thing } from 'not-declared';",
    ].join('\n'),
  },
  { path: 'src/App.tsx', content: "import { useState } from 'react';\nimport { Icon } from '@/components/Icon';" },
  { path: 'src/hero.png', content: 'iVBORw0KGgo=', encoding: 'base64' },
  { path: 'src/config/vite.config.ts', content: 'not a root file' },
];

const dependencies = { key: 'a'.repeat(32), nodeModulesDir: '/deps/a/node_modules' };
const profileOf = (files: ProjectFile[]) => dependencyProfileOf({ templateType: 'react', tier: 'free', dependencies, files })!;

describe('dependency profiles', () => {
  it("take the root files that decide Vite's start, none of the sources", () => {
    expect(startFilesOf(app).map((f) => f.path)).toEqual(['.env.local', 'package.json', 'tsconfig.app.json', 'tsconfig.json', 'vite.config.ts']);
  });

  it('find the packages the sources import at run time that package.json declares', () => {
    expect(importedPackagesOf(app)).toEqual(['@tanstack/react-query', 'lucide-react', 'react', 'react-dom/client', 'zustand/middleware']);
  });

  it('share a key across projects that differ only in their sources, not in a config file, the set, the template or the tier', () => {
    const key = profileOf(app).key;
    const otherSources = app.map((f) => (f.path === 'src/App.tsx' ? { ...f, content: 'export default 1;' } : f));
    expect(profileOf(otherSources).key).toBe(key);
    const otherConfig = app.map((f) => (f.path === 'vite.config.ts' ? { ...f, content: f.content + '\n' } : f));
    expect(profileOf(otherConfig).key).not.toBe(key);
    expect(dependencyProfileOf({ templateType: 'react', tier: 'free', dependencies: { ...dependencies, key: 'b'.repeat(32) }, files: app })!.key).not.toBe(key);
    expect(dependencyProfileOf({ templateType: 'vue', tier: 'free', dependencies, files: app })!.key).not.toBe(key);
    expect(dependencyProfileOf({ templateType: 'react', tier: 'pro', dependencies, files: app })!.key).not.toBe(key);
  });

  it('are none when the start files are too large to travel with a machine', () => {
    const big = [...app, { path: '.env', content: 'X='.padEnd(PROFILE_FILES_MAX_BYTES, 'x') }];
    expect(dependencyProfileOf({ templateType: 'react', tier: 'free', dependencies, files: big })).toBeNull();
  });

  it('travel to the machine as its START_FILES and OPTIMIZE_DEPS', () => {
    const profile = profileOf(app);
    const env = profileMachineEnv(profile);
    expect(JSON.parse(Buffer.from(env.START_FILES, 'base64').toString('utf8'))).toEqual(profile.files);
    expect(JSON.parse(env.OPTIMIZE_DEPS)).toEqual(profile.optimizeDeps);
  });
});

describe('parseDependencyPool', () => {
  it('reads <sets>x<machines>, and none when empty', () => {
    expect(parseDependencyPool('4x1')).toEqual({ sets: 4, machinesPerSet: 1 });
    expect(parseDependencyPool(undefined)).toEqual({ sets: 0, machinesPerSet: 0 });
  });

  it('names the variable when malformed', () => {
    expect(() => parseDependencyPool('four')).toThrow(ConfigError);
    expect(() => parseDependencyPool('four')).toThrow(/DEPENDENCY_POOL/);
  });
});
