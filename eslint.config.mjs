// ESLint for the whole repo (`npm run lint`, or `nx run <project>:lint`): the
// boundaries between the Nx projects, and rules that catch bugs (ESLint's and
// typescript-eslint's recommended sets, less what TypeScript already checks or
// what is taste). No formatting rules.
import js from '@eslint/js';
import nx from '@nx/eslint-plugin';
import tseslint from 'typescript-eslint';

/** Spec code: spec files, test folders and the end-to-end project. Only it may use @velocity/testing. */
const SPEC_FILES = ['**/*.spec.ts', '**/test/**/*.ts', 'apps/e2e/**/*.ts'];
const E2E_FILES = ['apps/e2e/**/*.ts'];

/**
 * Which libraries a library's production code may import, by the tags in its
 * project.json: contracts nothing of ours; runtime contracts; session-store
 * those two; machines and ops those three.
 */
const LIBRARY_DIRECTION = [
  { sourceTag: 'scope:contracts', onlyDependOnLibsWithTags: ['scope:contracts'] },
  { sourceTag: 'scope:runtime', onlyDependOnLibsWithTags: ['scope:contracts'] },
  { sourceTag: 'scope:session-store', onlyDependOnLibsWithTags: ['scope:contracts', 'scope:runtime'] },
  { sourceTag: 'scope:machines', onlyDependOnLibsWithTags: ['scope:contracts', 'scope:runtime', 'scope:session-store'] },
  { sourceTag: 'scope:ops', onlyDependOnLibsWithTags: ['scope:contracts', 'scope:runtime', 'scope:session-store'] },
];

/**
 * Apps use libraries, never another app; libraries never use apps; testing
 * uses anything but apps. Spec code may also use testing, and any library
 * (a contracts spec may need a Redis connection from ops). The end-to-end
 * specs alone drive apps' own parts (a cleanup harness, the machine's activity
 * reporter), by path.
 */
function boundaries({ specs, e2e = false }) {
  const testing = specs ? ['type:testing'] : [];
  return [
    'error',
    {
      depConstraints: [
        { sourceTag: 'type:app', onlyDependOnLibsWithTags: ['type:lib', ...testing] },
        { sourceTag: 'type:lib', onlyDependOnLibsWithTags: ['type:lib', ...testing] },
        { sourceTag: 'type:testing', onlyDependOnLibsWithTags: ['type:lib', 'type:testing'] },
        { sourceTag: 'type:e2e', onlyDependOnLibsWithTags: ['type:lib', 'type:testing', 'type:app'] },
        ...(specs ? [] : LIBRARY_DIRECTION),
      ],
      allow: e2e ? ['^(\\.\\./)+(api|provisioner|cleanup|preview-container)/'] : [],
      // Cycles that only spec code makes: a lib's specs use testing, which uses the lib; contracts' file-changes
      // spec takes its Redis connection from ops. Production code cannot make one: each lib imports only those below it.
      // No lazy-loaded libraries in Node: a spec that require()s a lib in a fresh module registry makes none.
      checkDynamicDependenciesExceptions: ['@velocity/*'],
      ignoredCircularDependencies: [
        ['testing', 'tag:type:lib'],
        ['contracts', 'ops'],
      ],
    },
  ];
}

export default tseslint.config(
  { ignores: ['dist/', 'node_modules/', '.nx/', '.velocity/', 'coverage/', '**/templates/**', '**/fixtures/**', '**/jest.config.js', 'apps/api/src/page/*.js'] },
  {
    files: ['**/*.ts', '**/*.js', '**/*.mjs'],
    extends: [js.configs.recommended, tseslint.configs.recommended],
    plugins: { '@nx': nx },
    rules: {
      '@nx/enforce-module-boundaries': boundaries({ specs: false }),
      // Tooling is not code to build on: apps and libs never import scripts/ or bench/.
      'no-restricted-imports': ['error', { patterns: [{ regex: '^(\\.\\./)+(scripts|bench)(/|$)', message: 'scripts/ and bench/ are tooling: apps and libs never import them.' }] }],
      // TypeScript's noUnusedLocals reports these already.
      '@typescript-eslint/no-unused-vars': 'off',
      // Taste, not bugs.
      '@typescript-eslint/no-explicit-any': 'off',
      'no-regex-spaces': 'off',
      // Jest's global setup and the fixtures are CommonJS.
      '@typescript-eslint/no-require-imports': 'off',
    },
  },
  {
    files: SPEC_FILES,
    rules: { '@nx/enforce-module-boundaries': boundaries({ specs: true }) },
  },
  {
    files: E2E_FILES,
    rules: { '@nx/enforce-module-boundaries': boundaries({ specs: true, e2e: true }) },
  },
  {
    // Tooling may use tooling: a script reuses the benchmark's helpers (the system's start-up, /proc readings).
    files: ['scripts/**/*.ts', 'bench/**/*.ts'],
    rules: { 'no-restricted-imports': 'off' },
  },
);
