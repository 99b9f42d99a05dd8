import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomUUID } from 'node:crypto';
import { EventLog, createRedis } from '@velocity/ops';
import { LocalMachineProvider } from '@velocity/machines';
import { PostgresSessionStore } from '@velocity/session-store';
import { createLogger } from '@velocity/runtime';
import { testConfig } from '@velocity/testing';
import { EndSession } from './end-session';

describe('EndSession', () => {
  const config = testConfig();
  const machinesDir = mkdtempSync(join(tmpdir(), 'vp-cleanup-'));
  const redis = createRedis(config.REDIS_URL);
  const store = new PostgresSessionStore(config.DATABASE_URL);
  const events = new EventLog(redis, config.QUEUE_PREFIX, 60);
  // A real process stands in for the preview container: ending only needs something to destroy.
  const provider = new LocalMachineProvider({ dir: machinesDir, command: [process.execPath, '-e', 'setInterval(() => {}, 1000)'] });
  const endSession = new EndSession({ store, provider, events, logger: createLogger('cleanup-test', 'silent') });

  afterAll(async () => {
    await Promise.all((await provider.list()).map((m) => provider.destroy(m.id)));
    rmSync(machinesDir, { recursive: true, force: true });
    await store.close();
    redis.disconnect();
  });

  async function activeSession() {
    const project = await store.ensureProject({ id: randomUUID(), name: 'cleanup test', templateType: 'react' });
    const id = randomUUID();
    await store.createSession({ id, projectId: project.id, tier: 'free', resourceLimits: { cpus: 1, memoryMb: 512 }, status: 'creating' });
    const machine = await provider.create({ sessionId: id, projectId: project.id, templateType: 'react', resourceLimits: { cpus: 1, memoryMb: 512 }, env: {} });
    await store.transition(id, 'starting', { containerId: machine.id, containerUrl: machine.url });
    await store.transition(id, 'active', { previewUrl: 'http://127.0.0.1/p/x/', ttlSeconds: 60 });
    return { id, machine };
  }

  it('ends an active session once, destroys its machine and stores ending and ended', async () => {
    const { id, machine } = await activeSession();
    expect((await provider.get(machine.id))?.state).toBe('started');

    const results = await Promise.all([endSession.execute(id, 'expired'), endSession.execute(id, 'expired')]);
    expect(results.sort()).toEqual(['ended', 'not-active']);

    expect(await provider.get(machine.id)).toBeNull();
    const row = await store.getSession(id);
    expect(row?.status).toBe('ended');
    expect(row?.endedAt).not.toBeNull();
    const types = (await events.read(id)).map((e) => e.event.type);
    expect(types).toEqual(['ending', 'ended']);
  });

  it('does nothing to a session that is not active', async () => {
    const project = await store.ensureProject({ id: randomUUID(), name: 'cleanup test', templateType: 'react' });
    const id = randomUUID();
    await store.createSession({ id, projectId: project.id, tier: 'free', resourceLimits: { cpus: 1, memoryMb: 512 }, status: 'creating' });
    expect(await endSession.execute(id, 'expired')).toBe('not-active');
    expect((await store.getSession(id))?.status).toBe('creating');
    expect(await events.read(id)).toEqual([]);
  });
});
