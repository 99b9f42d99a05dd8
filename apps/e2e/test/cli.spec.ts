/**
 * The command-line client (scripts/preview.ts), run for real against a real
 * system: `npx velocity-preview start` (its bin shim) and `npm run preview`.
 */
import { execFile } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { join } from 'node:path';
import { DEMO_PROJECT_ID, PROVISION_STEPS, sessionEventSchema } from '@velocity/shared';
import { startSystem, type RunningSystem } from '../src/system';

jest.setTimeout(120_000);

const ROOT = join(__dirname, '../../..');
const BIN = join(ROOT, 'bin/velocity-preview.js');
const UUID = '[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}';

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

function run(file: string, args: string[], env: NodeJS.ProcessEnv = {}): Promise<Run> {
  return new Promise((resolve) => {
    execFile(file, args, { cwd: ROOT, env: { ...process.env, ...env }, timeout: 90_000 }, (err, stdout, stderr) => {
      const code = err ? (typeof (err as { code?: unknown }).code === 'number' ? ((err as { code: number }).code) : null) : 0;
      resolve({ code, stdout, stderr });
    });
  });
}

const cli = (args: string[], env?: NodeJS.ProcessEnv) => run(process.execPath, [BIN, ...args], env);

describe('velocity-preview (command-line client)', () => {
  let system: RunningSystem;
  const sessions: string[] = [];

  beforeAll(async () => {
    system = await startSystem();
  });

  afterAll(async () => {
    // Stop what the runs started (system.stop() destroys any machine left as well).
    await Promise.all(sessions.map((id) => fetch(`${system.baseUrl}/v1/sessions/${id}`, { method: 'DELETE' }).catch(() => undefined)));
    await system?.stop();
  });

  it('start <projectId>: each step as it finishes, then the URL; exit 0', async () => {
    const result = await cli(['start', DEMO_PROJECT_ID, '--api', system.baseUrl]);
    expect(result.stderr).toBe('');
    expect(result.code).toBe(0);
    const lines = result.stdout.trimEnd().split('\n');
    expect(lines[0]).toMatch(new RegExp(`^session (${UUID}) queued \\(project ${DEMO_PROJECT_ID}\\)$`));
    const sessionId = lines[0].split(' ')[1];
    sessions.push(sessionId);
    // Output is not a terminal: plain lines, one per finished step, with the time since the start and the step's own.
    const steps = PROVISION_STEPS.length;
    expect(lines.slice(1, 1 + steps).map((line) => line.replace(/^ *\d+\.\d\ds {2}/, ''))).toEqual(
      PROVISION_STEPS.map((step) => expect.stringMatching(new RegExp(`^✓ ${step} \\(\\d+ ms\\)$`))),
    );
    const url = system.previewUrlOf(sessionId);
    expect(lines[1 + steps]).toMatch(new RegExp(`^ *\\d+\\.\\d\\ds {2}ready: ${url.replace(/[.]/g, '\\.')}$`));
    expect(lines[2 + steps]).toMatch(/^ +expires \d{4}-\d\d-\d\dT/);
    const page = await fetch(url);
    expect(page.status).toBe(200);
    expect(await page.text()).toContain('/@vite/client');
  });

  it('npm run preview -- <unknown project>: the api’s reason, exit 1', async () => {
    const unknown = randomUUID();
    const result = await run('npm', ['run', '--silent', 'preview', '--', unknown, '--api', system.baseUrl]);
    expect(result.code).toBe(1);
    expect(result.stdout).toBe('');
    expect(result.stderr.trim()).toBe(`preview: POST /v1/sessions answered 404: Project ${unknown} does not exist`);
  });

  it('--json: the session, then every event as one JSON line; --template creates the project first', async () => {
    const result = await cli(['start', '--template', 'svelte', '--name', 'From the CLI', '--json', '--api', system.baseUrl]);
    expect(result.code).toBe(0);
    expect(result.stderr).toBe('');
    const lines = result.stdout.trimEnd().split('\n').map((line) => JSON.parse(line));
    expect(lines[0]).toMatchObject({ type: 'project', project: { name: 'From the CLI', templateType: 'svelte' } });
    const projectId = lines[0].project.id;
    expect(lines[1]).toEqual({ type: 'session', sessionId: expect.stringMatching(new RegExp(`^${UUID}$`)), projectId });
    sessions.push(lines[1].sessionId);
    const events = lines.slice(2).map((line) => sessionEventSchema.parse(line));
    expect(events[0].type).toBe('queued');
    expect(events.filter((e) => e.type === 'progress' && e.state === 'done').map((e) => (e as { step: string }).step)).toEqual([...PROVISION_STEPS]);
    expect(events.at(-1)).toMatchObject({ type: 'ready', sessionId: lines[1].sessionId, previewUrl: system.previewUrlOf(lines[1].sessionId) });
    expect(await (await fetch(`${system.baseUrl}/v1/projects/${projectId}`)).json()).toMatchObject({ id: projectId, templateType: 'svelte' });
  });

  it('--json with an unknown template: an error line with the status, exit 1', async () => {
    const result = await cli(['start', '--template', 'cobol', '--json', '--api', system.baseUrl]);
    expect(result.code).toBe(1);
    const [line] = result.stdout.trimEnd().split('\n').map((l) => JSON.parse(l));
    expect(line).toEqual({ type: 'error', status: 400, message: expect.stringMatching(/^POST \/v1\/projects answered 400: templateType: must be one of: react, vue, svelte, vanilla-ts/) });
  });

  it('in a terminal: a live display per step (spinner, elapsed time, bar), then the URL', async () => {
    // `script` gives the client a pseudo-terminal, as a person's shell would.
    const command = [process.execPath, BIN, 'start', DEMO_PROJECT_ID, '--api', system.baseUrl].map((a) => `'${a}'`).join(' ');
    const result = await run('script', ['-qefc', command, '/dev/null']);
    expect(result.code).toBe(0);
    const screen = result.stdout;
    expect(screen).toContain('\x1b[?25l'); // cursor hidden while drawing...
    expect(screen).toContain('\x1b[?25h'); // ...and shown again
    expect(screen).toMatch(/\x1b\[\d+A/); // redrawn in place
    for (const step of PROVISION_STEPS) expect(screen).toMatch(new RegExp(`✓.*${step} +\\d+ ms`));
    expect(screen).toContain(`[${'█'.repeat(24)}] ${PROVISION_STEPS.length}/${PROVISION_STEPS.length}`);
    const sessionId = new RegExp(`session (${UUID}) · project`).exec(screen)![1];
    sessions.push(sessionId);
    expect(screen).toContain(`ready\x1b[0m in `);
    expect(screen).toContain(system.previewUrlOf(sessionId));
  });

  it('wrong usage: the reason and the usage, exit 2', async () => {
    const result = await cli(['start', DEMO_PROJECT_ID, '--template', 'react', '--api', system.baseUrl]);
    expect(result.code).toBe(2);
    expect(result.stderr).toMatch(/^preview: give a project id or --template, not both\n\nUsage: velocity-preview start/);
    const unknownFlag = await cli(['start', '--frobnicate']);
    expect(unknownFlag.code).toBe(2);
    expect(unknownFlag.stderr).toContain("Unknown option '--frobnicate'");
  });
});

describe('velocity-preview when provisioning fails', () => {
  let system: RunningSystem;

  beforeAll(async () => {
    system = await startSystem({ FAULTS: 'fail-create=1', PROVISION_ATTEMPTS: '1' });
  });

  afterAll(async () => {
    await system?.stop();
  });

  it('prints the failed step and reason, exit 1', async () => {
    const result = await cli(['start', DEMO_PROJECT_ID, '--api', system.baseUrl]);
    expect(result.code).toBe(1);
    expect(result.stdout).toMatch(/ ✗ create-machine: .*injected fault: machine create for session .* failed/);
    expect(result.stderr).toMatch(/^preview: failed at create-machine: .*injected fault/);
  });
});
