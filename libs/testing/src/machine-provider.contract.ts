import { randomUUID } from 'node:crypto';
import { TimeoutError } from '@velocity/contracts';
import type { Machine, MachineProvider, MachineSpec } from '@velocity/machines';

export interface MachineProviderFixture {
  provider: MachineProvider;
  /** A spec for a session; its machine must start within a few seconds unless `env.START_DELAY_MS` asks it to be slow. */
  spec: (sessionId: string) => MachineSpec;
  /** Destroys every machine the fixture made and releases what it holds. */
  teardown: () => Promise<void>;
}

/**
 * The behaviour every MachineProvider adapter must have. Run it from an adapter's
 * spec with a setup that returns the provider and a spec maker:
 * `machineProviderContract('LocalMachineProvider', async () => ({ provider, spec, teardown }))`.
 * A slow start is asked for with `START_DELAY_MS` in the spec's env; the adapter's
 * machine (or its API's test double) must honour it. Every test uses fresh
 * session ids and destroys what it made.
 */
export function machineProviderContract(name: string, setup: () => Promise<MachineProviderFixture>): void {
  describe(`MachineProvider contract: ${name}`, () => {
    let fx: MachineProviderFixture;
    let provider: MachineProvider;
    const made = new Set<string>();

    beforeAll(async () => {
      fx = await setup();
      provider = fx.provider;
    });

    afterEach(async () => {
      for (const id of made) await provider.destroy(id).catch(() => undefined);
      made.clear();
    });

    afterAll(async () => {
      await fx?.teardown();
    });

    async function create(spec: MachineSpec): Promise<Machine> {
      const machine = await provider.create(spec);
      made.add(machine.id);
      return machine;
    }

    const ofSession = async (sessionId: string) => (await provider.list()).filter((m) => m.sessionId === sessionId);

    it('creates a machine that reaches started and has a URL', async () => {
      const sessionId = randomUUID();
      const created = await create(fx.spec(sessionId));
      expect(created).toMatchObject({ id: expect.any(String), sessionId });
      expect(['starting', 'started']).toContain(created.state);
      expect(() => new URL(created.url)).not.toThrow();

      const started = await provider.waitStarted(created, 20_000);
      expect(started).toMatchObject({ id: created.id, sessionId, state: 'started' });
      expect(await provider.get(created.id)).toMatchObject({ id: created.id, sessionId, state: 'started' });
    });

    it('create is idempotent per session: a second create returns the same machine', async () => {
      const sessionId = randomUUID();
      const first = await create(fx.spec(sessionId));
      const second = await create(fx.spec(sessionId));
      expect(second.id).toBe(first.id);
      await provider.waitStarted(first, 20_000);
      const third = await create(fx.spec(sessionId));
      expect(third.id).toBe(first.id);
      expect((await ofSession(sessionId)).map((m) => m.id)).toEqual([first.id]);
    });

    it('concurrent creates for one session make one machine', async () => {
      const sessionId = randomUUID();
      const machines = await Promise.all([0, 1, 2].map(() => create(fx.spec(sessionId))));
      expect(new Set(machines.map((m) => m.id)).size).toBe(1);
      await provider.waitStarted(machines[0], 20_000);
      expect((await ofSession(sessionId)).map((m) => m.id)).toEqual([machines[0].id]);
    });

    it('findBySession finds the machine of a session, and null for a session without one', async () => {
      const sessionId = randomUUID();
      const other = randomUUID();
      const machine = await create(fx.spec(sessionId));
      expect(await provider.findBySession(sessionId)).toMatchObject({ id: machine.id, sessionId });
      expect(await provider.findBySession(other)).toBeNull();
      // Machines of other sessions do not get in the way.
      const second = await create(fx.spec(other));
      expect(second.id).not.toBe(machine.id);
      expect(await provider.findBySession(sessionId)).toMatchObject({ id: machine.id });
      expect(await provider.findBySession(other)).toMatchObject({ id: second.id });
    });

    it('destroy removes the machine; destroying it again resolves; list leaves it out', async () => {
      const sessionId = randomUUID();
      const keptSession = randomUUID();
      const machine = await create(fx.spec(sessionId));
      const kept = await create(fx.spec(keptSession));
      await provider.waitStarted(machine, 20_000);

      await provider.destroy(machine.id);
      expect(await provider.get(machine.id)).toBeNull();
      expect(await provider.findBySession(sessionId)).toBeNull();
      await expect(provider.destroy(machine.id)).resolves.toBeUndefined();

      const listed = await provider.list();
      expect(listed.map((m) => m.id)).not.toContain(machine.id);
      expect(listed.map((m) => m.id)).toContain(kept.id);
      expect(listed.every((m) => m.state !== 'destroyed')).toBe(true);
    });

    it('a session whose machine was destroyed gets a new machine on create', async () => {
      const sessionId = randomUUID();
      const first = await create(fx.spec(sessionId));
      await provider.destroy(first.id);
      const second = await create(fx.spec(sessionId));
      expect(await provider.findBySession(sessionId)).toMatchObject({ id: second.id });
      expect(await ofSession(sessionId)).toHaveLength(1);
    });

    it('waitStarted on a slow start times out with a TimeoutError that names the machine', async () => {
      const sessionId = randomUUID();
      const spec = fx.spec(sessionId);
      const machine = await create({ ...spec, env: { ...spec.env, START_DELAY_MS: '10000' } });
      const started = Date.now();
      const error = await provider.waitStarted(machine, 300).then(
        () => null,
        (e: unknown) => e,
      );
      expect(error).toBeInstanceOf(TimeoutError);
      expect((error as Error).message).toContain(machine.id);
      expect(Date.now() - started).toBeLessThan(5000);
    });
  });
}
