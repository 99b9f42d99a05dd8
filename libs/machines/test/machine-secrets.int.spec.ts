import { randomUUID } from 'node:crypto';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { LocalMachineProvider } from '../src/local-machine-provider';
import { resourceLimitsOf } from '@velocity/contracts';

/**
 * A preview machine holds no credentials of the services. A real local
 * machine (a process that writes the environment it got, then serves /health)
 * started by a provisioner whose environment holds every kind of secret.
 */
describe('preview machines and secrets', () => {
  const SECRETS = {
    DATABASE_URL: 'postgres://postgres:hunter2@db:5432/app',
    REDIS_URL: 'redis://:pw@redis:6379',
    MACHINE_TOKEN_SECRET: 'signing-secret-signing-secret',
    SUPABASE_JWT_SECRET: 'jwt-secret-jwt-secret-jwt-secret-jwt',
    SUPABASE_SERVICE_ROLE_KEY: 'eyJservice.role.key',
    FLY_API_TOKEN: 'fly-token',
    OPERATOR_PASSWORD: 'operator-password',
    OPERATOR_TOKEN: 'operator-token-operator-token',
    PGPASSWORD: 'pg-password',
    VP_TEST_DATABASE_URL: 'postgres://postgres@127.0.0.1:5432/vp_test_x',
  };

  it('a local machine gets its own MACHINE_TOKEN and none of its provisioner’s secrets', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'vp-secret-machines-'));
    const script =
      "require('fs').writeFileSync(require('path').join(process.env.WORK_DIR, 'env.json'), JSON.stringify(process.env));" +
      "require('http').createServer((q, s) => s.end('ok')).listen(process.env.LISTEN_SOCKET || Number(process.env.PORT), '127.0.0.1')";
    const provider = new LocalMachineProvider({ dir, command: [process.execPath, '-e', script] });
    const saved = Object.fromEntries(Object.keys(SECRETS).map((k) => [k, process.env[k]]));
    Object.assign(process.env, SECRETS);
    const sessionId = randomUUID();
    try {
      const machine = await provider.create({
        sessionId,
        projectId: randomUUID(),
        templateType: 'react',
        resourceLimits: resourceLimitsOf('free'),
        env: { SESSION_ID: sessionId, MACHINE_TOKEN: 'the-machine-token' },
      });
      await provider.waitStarted(machine, 10_000);
      // WORK_DIR of a local machine: <dir>/<sessionId>/work.
      const env = JSON.parse(await readFile(join(dir, sessionId, 'work', 'env.json'), 'utf8'));
      expect(env).toMatchObject({ SESSION_ID: sessionId, MACHINE_TOKEN: 'the-machine-token' });
      for (const name of Object.keys(SECRETS)) expect({ name, value: env[name] }).toEqual({ name, value: undefined });
      expect(JSON.stringify(env)).not.toMatch(/hunter2|signing-secret|jwt-secret|service\.role|operator-/);
    } finally {
      for (const [k, v] of Object.entries(saved)) {
        if (v === undefined) delete process.env[k];
        else process.env[k] = v;
      }
      for (const m of await provider.list()) await provider.destroy(m.id);
      await provider.close();
      await rm(dir, { recursive: true, force: true });
    }
  });
});
