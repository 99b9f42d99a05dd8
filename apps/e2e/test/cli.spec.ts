/**
 * The command-line client (scripts/preview.ts), run for real against a real
 * system: `npx velocity-preview <command>` (its bin shim) and `npm run preview`.
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DEMO_PROJECT_ID, PROVISION_STEPS, sessionEventSchema, templateFiles } from '@velocity/contracts';
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

function run(file: string, args: string[], env: NodeJS.ProcessEnv = {}, cwd = ROOT): Promise<Run> {
  return new Promise((resolve) => {
    execFile(file, args, { cwd, env: { ...process.env, ...env }, timeout: 90_000 }, (err, stdout, stderr) => {
      const code = err ? (typeof (err as { code?: unknown }).code === 'number' ? ((err as { code: number }).code) : null) : 0;
      resolve({ code, stdout, stderr });
    });
  });
}

const cli = (args: string[], env?: NodeJS.ProcessEnv, cwd?: string) => run(process.execPath, [BIN, ...args], env, cwd);

/** The client running on its own: its output so far, a wait for a line, and its end. */
interface Spawned {
  child: ChildProcess;
  stdout: () => string;
  stderr: () => string;
  /** Resolves with the first line of stdout that matches. */
  line(pattern: RegExp, timeoutMs?: number): Promise<string>;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

function spawnCli(args: string[]): Spawned {
  const child = spawn(process.execPath, [BIN, ...args], { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  const waiters = new Set<() => void>();
  child.stdout!.on('data', (chunk: Buffer) => {
    stdout += chunk.toString();
    for (const wake of waiters) wake();
  });
  child.stderr!.on('data', (chunk: Buffer) => void (stderr += chunk.toString()));
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => child.once('close', (code, signal) => resolve({ code, signal })));
  const line = (pattern: RegExp, timeoutMs = 60_000) =>
    new Promise<string>((resolve, reject) => {
      const check = () => {
        const found = stdout.split('\n').find((l) => pattern.test(l));
        if (found === undefined) return;
        waiters.delete(check);
        clearTimeout(timer);
        resolve(found);
      };
      const timer = setTimeout(() => {
        waiters.delete(check);
        reject(new Error(`no line matching ${pattern} within ${timeoutMs} ms; stdout: ${stdout}; stderr: ${stderr}`));
      }, timeoutMs);
      waiters.add(check);
      check();
      // Ended without it: said at once, with what it printed.
      void exited.then(() => {
        if (!waiters.has(check)) return;
        waiters.delete(check);
        clearTimeout(timer);
        reject(new Error(`the client exited without a line matching ${pattern}; stdout: ${stdout}; stderr: ${stderr}`));
      });
    });
  return { child, stdout: () => stdout, stderr: () => stderr, line, exited };
}

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

  it('npm run preview -- start <unknown project>: the api’s reason, exit 1', async () => {
    const unknown = randomUUID();
    const result = await run('npm', ['run', '--silent', 'preview', '--', 'start', unknown, '--api', system.baseUrl]);
    expect(result.code).toBe(1);
    expect(result.stdout).toBe('');
    expect(result.stderr).toBe(`start: 404 Project ${unknown} does not exist (field: projectId)\n`);
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
    expect(line).toEqual({ type: 'error', status: 400, field: 'templateType', message: expect.stringMatching(/^templateType: must be one of: react, vue, svelte, vanilla-ts/) });
  });

  it('in a terminal: a live display per step (spinner, elapsed time, bar), then the URL', async () => {
    // `script` gives the client a pseudo-terminal, as a person's shell would.
    const command = [process.execPath, BIN, 'start', DEMO_PROJECT_ID, '--api', system.baseUrl].map((a) => `'${a}'`).join(' ');
    const result = await run('script', ['-qefc', command, '/dev/null']);
    expect(result.code).toBe(0);
    const screen = result.stdout;
    expect(screen).toContain('\x1b[?25l'); // cursor hidden while drawing...
    expect(screen).toContain('\x1b[?25h'); // ...and shown again
    // eslint-disable-next-line no-control-regex
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
    expect(result.stderr).toMatch(/^start: give a project id or --template, not both\n\nUsage: velocity-preview start/);
    const unknownFlag = await cli(['start', '--frobnicate']);
    expect(unknownFlag.code).toBe(2);
    expect(unknownFlag.stderr).toContain("Unknown option '--frobnicate'");
  });

  it('no arguments, help, --help, -h: every command, one line each; exit 0', async () => {
    const results = await Promise.all([cli([]), cli(['help']), cli(['--help']), cli(['-h'])]);
    for (const result of results) {
      expect(result.code).toBe(0);
      expect(result.stderr).toBe('');
      expect(result.stdout).toBe(results[0].stdout);
    }
    const commands = results[0].stdout.split('Commands:\n')[1].split('\n\n')[0].split('\n');
    expect(commands.map((line) => line.trim().split(' ')[0])).toEqual(['start', 'stop', 'extend', 'list', 'logs', 'help']);
    expect(results[0].stdout).toMatch(/^Usage: velocity-preview <command> \[options\]/);
    // The README shows the same list.
    expect(readFileSync(join(ROOT, 'README.md'), 'utf8')).toContain(`Commands:\n${commands.join('\n')}\n`);
    // Each command has help of its own, as `<command> --help` and as `help <command>`.
    const logsHelp = await cli(['logs', '--help']);
    expect(logsHelp.code).toBe(0);
    expect(logsHelp.stdout).toMatch(/^Usage: velocity-preview logs <sessionId> \[options\]\n/);
    expect(logsHelp.stdout).toContain('--follow');
    expect((await cli(['help', 'logs'])).stdout).toBe(logsHelp.stdout);
  });

  it('an unknown command, or a command without its argument: the reason and the usage on stderr, exit 2', async () => {
    const unknown = await cli(['frobnicate']);
    expect(unknown.code).toBe(2);
    expect(unknown.stdout).toBe('');
    expect(unknown.stderr).toMatch(/^velocity-preview: unknown command 'frobnicate'\n\nUsage: velocity-preview <command>/);
    const missing = await cli(['stop']);
    expect(missing.code).toBe(2);
    expect(missing.stderr).toMatch(/^stop: expected <sessionId>\n\nUsage: velocity-preview stop <sessionId>/);
    const notAnId = await cli(['logs', 'abc']);
    expect(notAnId.code).toBe(2);
    expect(notAnId.stderr).toMatch(/^logs: <sessionId> must be a session id \(a uuid\), got 'abc'\n/);
  });

  it('stop <unknown id>: the api’s message in one line, exit 1; an api that does not answer: the URL tried', async () => {
    const unknown = randomUUID();
    const result = await cli(['stop', unknown, '--api', system.baseUrl]);
    expect(result.code).toBe(1);
    expect(result.stdout).toBe('');
    expect(result.stderr).toBe(`stop: 404 Session ${unknown} does not exist\n`);
    // Nothing listens on this port (the range this spec may use).
    const down = await cli(['list', '--api', 'http://127.0.0.1:48899']);
    expect(down.code).toBe(1);
    expect(down.stderr).toMatch(/^list: cannot reach the api: GET http:\/\/127\.0\.0\.1:48899\/v1\/sessions\?status=live&limit=20 failed \(ECONNREFUSED\)/);
    expect(down.stderr.trim().split('\n')).toHaveLength(1);
  });

  describe('a session started with its output closed early, then followed, listed, extended and stopped', () => {
    let projectId: string;
    let sessionId: string;
    const at = '\\d{4}-\\d\\d-\\d\\dT\\d\\d:\\d\\d:\\d\\d\\.\\d{3}Z';

    it('start --json | head -1: the client ends quietly when its reader goes, exit 0', async () => {
      const spawned = spawnCli(['start', '--template', 'react', '--name', 'Closed pipe', '--json', '--api', system.baseUrl]);
      const first = await spawned.line(/^\{/);
      // The reader goes after the first line (the project), as `head -1` does; the session is asked for next.
      spawned.child.stdout!.destroy();
      projectId = JSON.parse(first).project.id;
      expect(await spawned.exited).toEqual({ code: 0, signal: null });
      expect(spawned.stderr()).toBe('');
      const listed = await (await fetch(`${system.baseUrl}/v1/sessions?status=all&limit=100`)).json();
      sessionId = listed.sessions.find((s: { projectId: string }) => s.projectId === projectId).id;
      sessions.push(sessionId);
    });

    it('logs: what has happened (waiting for it to be ready), then exits', async () => {
      const result = await cli(['logs', sessionId, '--api', system.baseUrl]);
      expect(result.stderr).toBe('');
      expect(result.code).toBe(0);
      const lines = result.stdout.trimEnd().split('\n');
      expect(lines[0]).toMatch(new RegExp(`^${at}  queued$`));
      for (const step of PROVISION_STEPS) expect(lines).toContainEqual(expect.stringMatching(new RegExp(`^${at}  ✓ ${step} \\(\\d+ ms`)));
      expect(lines.at(-1)).toMatch(new RegExp(`^${at}  ready: ${system.previewUrlOf(sessionId).replace(/[.]/g, '\\.')} \\(expires `));
      // --json: the same events, one JSON object per line.
      const json = await cli(['logs', sessionId, '--json', '--api', system.baseUrl]);
      expect(json.code).toBe(0);
      const events = json.stdout.trimEnd().split('\n').map((line) => sessionEventSchema.parse(JSON.parse(line)));
      expect(events[0].type).toBe('queued');
      expect(events.filter((e) => e.type === 'progress' && e.state === 'done').map((e) => (e as { step: string }).step)).toEqual([...PROVISION_STEPS]);
      expect(events.at(-1)).toMatchObject({ type: 'ready', previewUrl: system.previewUrlOf(sessionId) });
      expect(events.every((e) => e.sessionId === sessionId)).toBe(true);
    });

    it('logs after the build broke, and after its fix: up to the build state the session has, then exits', async () => {
      const app = templateFiles('react').find((f) => f.path === 'src/App.jsx')!.content;
      const buildIs = async (state: string) => {
        for (const deadline = Date.now() + 15_000; Date.now() < deadline; await new Promise((r) => setTimeout(r, 100))) {
          const session = await (await fetch(`${system.baseUrl}/v1/sessions/${sessionId}`)).json();
          if (session.build?.state === state) return;
        }
        throw new Error(`the build of ${sessionId} did not become ${state}`);
      };
      const put = (content: string) =>
        fetch(`${system.baseUrl}/v1/projects/${projectId}/files/src/App.jsx`, { method: 'PUT', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ content }) });
      expect((await put(app.replace('<h1>Hello', '<h1>Hello {'))).status).toBe(200);
      await buildIs('errors');
      const broken = await cli(['logs', sessionId, '--api', system.baseUrl]);
      expect(broken.code).toBe(0);
      const lines = broken.stdout.trimEnd().split('\n');
      expect(lines.slice(-2)).toEqual([
        expect.stringMatching(new RegExp(`^${at}  build: 1 error \\(the preview runs; fix and it updates\\)$`)),
        expect.stringMatching(/^ +✗ src\/App\.jsx:8(:\d+)? \S/),
      ]);
      expect((await put(app)).status).toBe(200);
      await buildIs('ok');
      const fixed = await cli(['logs', sessionId, '--json', '--api', system.baseUrl]);
      expect(fixed.code).toBe(0);
      const events = fixed.stdout.trimEnd().split('\n').map((line) => sessionEventSchema.parse(JSON.parse(line)));
      expect(events.slice(-2)).toEqual([
        expect.objectContaining({ type: 'diagnostics', state: 'errors' }),
        expect.objectContaining({ type: 'diagnostics', state: 'ok', diagnostics: [] }),
      ]);
    });

    it('list: a table with the session (id, project, status, URL, expiry); --json parses; VP_API_URL names the api', async () => {
      const result = await cli(['list'], { VP_API_URL: system.baseUrl });
      expect(result.stderr).toBe('');
      expect(result.code).toBe(0);
      const [header, ...rows] = result.stdout.trimEnd().split('\n');
      expect(header.split(/ {2,}/)).toEqual(['ID', 'PROJECT', 'STATUS', 'PREVIEW URL', 'EXPIRES']);
      const row = rows.find((r) => r.startsWith(sessionId));
      expect(row?.split(/ {2,}/)).toEqual([sessionId, projectId, 'active', system.previewUrlOf(sessionId), expect.stringMatching(/^\d{4}-\d\d-\d\dT/)]);
      const json = await cli(['list', '--json', '--api', system.baseUrl]);
      expect(json.code).toBe(0);
      // Read from .env in the folder it runs in, as the services do; the environment wins over the file.
      const folder = mkdtempSync(join(tmpdir(), 'vp-cli-dotenv-'));
      try {
        writeFileSync(join(folder, '.env'), `VP_API_URL=${system.baseUrl}\n`);
        const fromFile = await cli(['list', '--json'], {}, folder);
        expect(fromFile.code).toBe(0);
        expect(JSON.parse(fromFile.stdout).sessions.map((s: { id: string }) => s.id)).toContain(sessionId);
        const overridden = await cli(['list'], { VP_API_URL: 'http://127.0.0.1:48898' }, folder);
        expect(overridden.code).toBe(1);
        expect(overridden.stderr).toContain('127.0.0.1:48898');
      } finally {
        rmSync(folder, { recursive: true, force: true });
      }
      const listed = JSON.parse(json.stdout);
      expect(listed.nextCursor).toBeNull();
      expect(listed.sessions).toContainEqual(expect.objectContaining({ id: sessionId, projectId, status: 'active', previewUrl: system.previewUrlOf(sessionId) }));
    });

    it('extend --minutes: expiresAt moves later', async () => {
      const before = (await (await fetch(`${system.baseUrl}/v1/sessions/${sessionId}`)).json()).expiresAt as string;
      const result = await cli(['extend', sessionId, '--minutes', '10', '--api', system.baseUrl]);
      expect(result.stderr).toBe('');
      expect(result.code).toBe(0);
      const after = (await (await fetch(`${system.baseUrl}/v1/sessions/${sessionId}`)).json()).expiresAt as string;
      expect(Date.parse(after) - Date.parse(before)).toBe(10 * 60 * 1000);
      expect(result.stdout).toMatch(new RegExp(`^session ${sessionId} expires at ${after.replace(/[.]/g, '\\.')} \\(its tier allows until \\d{4}-`));
    });

    it('logs --follow: Ctrl-C ends it quietly', async () => {
      const spawned = spawnCli(['logs', sessionId, '--follow', '--api', system.baseUrl]);
      await spawned.line(/  ready: /);
      spawned.child.kill('SIGINT');
      expect(await spawned.exited).toEqual({ code: 130, signal: null });
      expect(spawned.stderr()).toBe('');
    });

    it('logs --follow ends when stop ends the session; list no longer shows it, list --all does', async () => {
      const spawned = spawnCli(['logs', sessionId, '--follow', '--api', system.baseUrl]);
      await spawned.line(/  ready: /);
      const stopped = await cli(['stop', sessionId, '--api', system.baseUrl]);
      expect(stopped.stderr).toBe('');
      expect(stopped.code).toBe(0);
      expect(stopped.stdout).toBe(`session ${sessionId} is ending\n`);
      expect(await spawned.exited).toEqual({ code: 0, signal: null });
      expect(spawned.stderr()).toBe('');
      expect(spawned.stdout().trimEnd().split('\n').slice(-2)).toEqual([expect.stringMatching(/  ending: stopped$/), expect.stringMatching(/  ended: stopped$/)]);
      // Stopping it again: the api's 409, in one line.
      const again = await cli(['stop', sessionId, '--api', system.baseUrl]);
      expect(again.code).toBe(1);
      expect(again.stderr).toBe(`stop: 409 Session ${sessionId} is already ended\n`);
      const live = JSON.parse((await cli(['list', '--json', '--api', system.baseUrl])).stdout);
      expect(live.sessions.map((s: { id: string }) => s.id)).not.toContain(sessionId);
      const all = JSON.parse((await cli(['list', '--all', '--json', '--api', system.baseUrl])).stdout);
      expect(all.sessions).toContainEqual(expect.objectContaining({ id: sessionId, status: 'ended' }));
    });
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
    expect(result.stderr).toMatch(/^start: failed at create-machine: .*injected fault/);
  });
});
