import { randomUUID } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PermanentError, TimeoutError, resourceLimitsOf } from '@velocity/contracts';
import { FlyApiDouble, nodeMachineRunner } from '@velocity/testing';
import { FlyMachineProvider } from '../src/fly-machine-provider';

const TOKEN = 'fly-test-token';
const APP = 'vp-test-previews';

/**
 * A Fly machine whose process exits while it starts (the Fly API double runs
 * it as a real process): waitStarted fails at once with the exit code, as the
 * local provider does, and not when its wait runs out.
 */
describe('FlyMachineProvider: a machine that exits while starting', () => {
  let dir: string;
  let double: FlyApiDouble;

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'vp-fly-exit-'));
    const entry = join(dir, 'exits.js');
    await writeFile(entry, "process.stderr.write('cannot start\\n'); setTimeout(() => process.exit(3), 200);\n");
    double = await FlyApiDouble.start({ token: TOKEN, apps: [APP], runMachine: nodeMachineRunner({ entry }), waitSecondMs: 1000 });
  });

  afterAll(async () => {
    await double?.close();
    await rm(dir, { recursive: true, force: true });
  });

  it('fails waitStarted at once, not retried, naming the exit code', async () => {
    const provider = new FlyMachineProvider({ apiUrl: double.url, token: TOKEN, appName: APP, image: 'registry.fly.io/vp:test', region: 'ams', retryBaseDelayMs: 10 });
    const sessionId = randomUUID();
    const machine = await provider.create({ sessionId, projectId: randomUUID(), templateType: 'react', resourceLimits: resourceLimitsOf('free'), env: { SESSION_ID: sessionId } });
    const started = Date.now();
    const error = await provider.waitStarted(machine, 60_000).then(() => null, (err: unknown) => err);
    expect(Date.now() - started).toBeLessThan(10_000);
    expect(error).not.toBeInstanceOf(TimeoutError);
    expect(error).toBeInstanceOf(PermanentError);
    expect((error as Error).message).toBe('the machine exited with code 3 while starting');
    await provider.destroy(machine.id);
    await provider.close();
  });
});
