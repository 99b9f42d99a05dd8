import { defineConfig } from 'rolldown';

/**
 * The machine as one file: its own code and the parts of the service's libraries
 * and of zod it uses (nothing else of theirs is loaded at start), with the other
 * packages it requires kept external (pino, and Vite and its plugins, which it
 * loads by path from the project's or the service's node_modules).
 */
/** Bundled, tree-shaken: the service's libraries and zod (ES modules without side effects: half its load time goes). */
const BUNDLED = ['@velocity', 'zod'];

export default defineConfig({
  input: 'apps/preview-container/src/main.ts',
  platform: 'node',
  // Resolves `@velocity/*` to the libraries' sources, as the type checker does.
  tsconfig: 'tsconfig.base.json',
  external: (id) => !id.startsWith('.') && !id.startsWith('/') && !id.startsWith('\0') && !BUNDLED.some((name) => id === name || id.startsWith(`${name}/`)),
  // A library (or zod) module that nothing of the machine uses is left out; the machine's own modules keep their effects.
  treeshake: { moduleSideEffects: (id) => !id.includes('/libs/') && !id.includes('/node_modules/zod/') },
  output: { file: 'dist/apps/preview-container/src/main.js', format: 'cjs', sourcemap: true },
});
