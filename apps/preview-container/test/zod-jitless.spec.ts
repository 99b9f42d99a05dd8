import { readFileSync } from 'node:fs';
import { join } from 'node:path';

/** How many functions zod compiles (`new Function`) while `parse` runs. */
function functionsCompiledBy(parse: () => void): number {
  const original = globalThis.Function;
  let compiled = 0;
  globalThis.Function = new Proxy(original, {
    construct(target, args) {
      compiled += 1;
      return Reflect.construct(target, args);
    },
  });
  try {
    parse();
  } finally {
    globalThis.Function = original;
  }
  return compiled;
}

const claim = { sessionId: 'a'.repeat(8), projectId: 'p', files: [{ path: 'src/App.tsx', content: 'x' }] };

describe('zod-jitless', () => {
  it('keeps zod from compiling a fast path for schemas built after it', () => {
    jest.isolateModules(() => {
      require('../src/zod-jitless');
      const { poolClaimSchema } = require('@velocity/contracts');
      expect(functionsCompiledBy(() => poolClaimSchema.safeParse(claim))).toBe(0);
    });
  });

  it('is what makes the difference: without it the same parse compiles functions', () => {
    jest.isolateModules(() => {
      const { poolClaimSchema } = require('@velocity/contracts');
      expect(functionsCompiledBy(() => poolClaimSchema.safeParse(claim))).toBeGreaterThan(0);
    });
  });

  it('is the first import of the machine program, before any module that builds a schema', () => {
    const main = readFileSync(join(__dirname, '../src/main.ts'), 'utf8');
    const firstImport = main.split('\n').find((line) => line.startsWith('import '));
    expect(firstImport).toBe("import './zod-jitless';");
  });
});
