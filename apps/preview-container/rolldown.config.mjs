import { defineConfig } from 'rolldown';

/**
 * The machine as one file: its own code and the parts of the service's libraries
 * it uses (nothing else of theirs is loaded at start), with the packages it
 * requires kept external (zod, pino, and Vite and its plugins, which it loads by
 * path from the project's or the service's node_modules).
 */
export default defineConfig({
  input: 'apps/preview-container/src/main.ts',
  platform: 'node',
  // Resolves `@velocity/*` to the libraries' sources, as the type checker does.
  tsconfig: 'tsconfig.base.json',
  external: (id) => !id.startsWith('.') && !id.startsWith('/') && !id.startsWith('@velocity/') && !id.startsWith('\0'),
  // A library module that nothing of the machine uses is left out; the machine's own modules keep their effects.
  treeshake: { moduleSideEffects: (id) => !id.includes('/libs/') },
  output: { file: 'dist/apps/preview-container/src/main.js', format: 'cjs', sourcemap: true },
});
