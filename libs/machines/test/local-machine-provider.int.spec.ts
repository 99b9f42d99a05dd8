import { randomUUID } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { LocalMachineProvider } from '../src/local-machine-provider';
import type { SandboxSetting } from '../src/machine-sandbox';
import { resourceLimitsOf } from '@velocity/contracts';
import { FIXTURES_DIR, machineProviderContract } from '@velocity/testing';

// Real processes: each machine is tests/fixtures/fake-machine.js under this Node,
// which listens on the port the provider gives it (no Vite, so it starts fast);
// in a bubblewrap sandbox, and as a plain process.
const FAKE_MACHINE = join(FIXTURES_DIR, 'fake-machine.js');

for (const sandbox of ['bubblewrap', 'none'] satisfies SandboxSetting[]) {
  machineProviderContract(`LocalMachineProvider (MACHINE_SANDBOX=${sandbox})`, async () => {
    const dir = await mkdtemp(join(tmpdir(), 'vp-local-machines-'));
    const provider = new LocalMachineProvider({ dir, entry: FAKE_MACHINE, sandbox });
    return {
      provider,
      spec: (sessionId) => ({
        sessionId,
        projectId: randomUUID(),
        templateType: 'react',
        resourceLimits: resourceLimitsOf('free'),
        env: { SESSION_ID: sessionId },
      }),
      teardown: async () => {
        for (const machine of await provider.list()) await provider.destroy(machine.id);
        await provider.close();
        await rm(dir, { recursive: true, force: true });
      },
    };
  });
}
