import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startTestRegistry, type RunningRegistry } from './test-registry';

/**
 * Inside a `describe`: the test registry for its tests (started once, stopped
 * after them) and a fresh empty folder for each test (removed after it).
 */
export function useRegistryAndFolder(folderPrefix: string): { registry: RunningRegistry; root: string } {
  const context = {} as { registry: RunningRegistry; root: string };
  beforeAll(async () => {
    context.registry = await startTestRegistry();
  });
  afterAll(async () => {
    await context.registry?.stop();
  });
  beforeEach(() => {
    context.root = mkdtempSync(join(tmpdir(), folderPrefix));
  });
  afterEach(() => context.root && rmSync(context.root, { recursive: true, force: true }));
  return context;
}
