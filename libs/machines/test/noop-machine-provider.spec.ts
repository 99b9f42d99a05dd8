import { randomUUID } from 'node:crypto';
import { NoopMachineProvider } from '../src/noop-machine-provider';
import { createMachineProvider } from '../src/create-machine-provider';
import { ConfigError, loadConfig, resourceLimitsOf } from '@velocity/contracts';
import type { MachineSpec } from '../src/machine-provider';
import { machineProviderContract } from '@velocity/testing';

/** A machine's page as the edge asks it: on the session's preview origin, at the machine's address. */
const previewOf = (machineUrl: string, sessionId: string) => `http://${sessionId}.localhost:${new URL(machineUrl).port}/`;

const specOf = (sessionId: string): MachineSpec => ({
  sessionId,
  projectId: randomUUID(),
  templateType: 'react',
  resourceLimits: resourceLimitsOf('free'),
  env: { SESSION_ID: sessionId },
});

machineProviderContract('NoopMachineProvider', async () => {
  const provider = new NoopMachineProvider();
  return {
    provider,
    spec: specOf,
    teardown: async () => {
      for (const machine of await provider.list()) await provider.destroy(machine.id);
      await provider.close();
    },
  };
});

describe('NoopMachineProvider (benchmarks only)', () => {
  let provider: NoopMachineProvider;

  beforeEach(() => {
    provider = new NoopMachineProvider();
  });

  afterEach(async () => {
    await provider.close();
  });

  it('is started at once, and its one server answers the preview origin with the Vite client script', async () => {
    const sessionId = randomUUID();
    const machine = await provider.create(specOf(sessionId));
    expect(machine.state).toBe('started');
    const res = await fetch(previewOf(machine.url, sessionId), { headers: { accept: 'text/html' } });
    expect(res.status).toBe(200);
    expect(await res.text()).toContain('src="/@vite/client"');
    expect((await fetch(`${machine.url}/health`)).status).toBe(200);
  });

  it('serves every machine from the same server, and stops serving a destroyed one', async () => {
    const [a, b] = [randomUUID(), randomUUID()];
    const first = await provider.create(specOf(a));
    const second = await provider.create(specOf(b));
    expect(second.url).toBe(first.url);
    await provider.destroy(first.id);
    expect((await fetch(previewOf(first.url, a))).status).toBe(404);
    expect((await fetch(`${previewOf(first.url, b)}src/App.jsx`)).status).toBe(200);
  });

  it('is what MACHINE_PROVIDER=noop makes, and is refused when NODE_ENV=production', () => {
    expect(createMachineProvider(loadConfig({ MACHINE_PROVIDER: 'noop' })).name).toBe('noop');
    const refused = (() => {
      try {
        loadConfig({ MACHINE_PROVIDER: 'noop', NODE_ENV: 'production' });
        return null;
      } catch (err) {
        return err;
      }
    })();
    expect(refused).toBeInstanceOf(ConfigError);
    expect((refused as ConfigError).variable).toBe('MACHINE_PROVIDER');
  });
});
