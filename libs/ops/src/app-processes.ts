import { spawn, type ChildProcess } from 'node:child_process';
import { join } from 'node:path';

const ROOT = join(__dirname, '../../..');

/** The long-running apps `npm start` runs, each its own process. */
export const APPS = ['api', 'provisioner', 'cleanup'] as const;
export type AppName = (typeof APPS)[number];

/** Starts one app's main.ts under swc-node, with the given environment. */
export function startApp(app: AppName, env: NodeJS.ProcessEnv, stdio: 'inherit' | 'pipe' = 'inherit'): ChildProcess {
  return spawn(process.execPath, ['-r', '@swc-node/register', join(ROOT, 'apps', app, 'src/main.ts')], {
    cwd: ROOT,
    env,
    stdio: ['ignore', stdio, stdio],
  });
}

/** SIGTERM, then SIGKILL after `graceMs`; resolves once the process has exited. */
export function stopProcess(child: ChildProcess, graceMs = 10_000): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => {
    const timer = setTimeout(() => child.kill('SIGKILL'), graceMs);
    child.once('exit', () => {
      clearTimeout(timer);
      resolve();
    });
    child.kill('SIGTERM');
  });
}

/** Polls `url` until it answers 200; throws naming the URL after `timeoutMs`. */
export async function waitForHttp(url: string, timeoutMs: number, isDead: () => boolean = () => false): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (isDead()) throw new Error(`the process behind ${url} exited before it answered`);
    const ok = await fetch(url, { signal: AbortSignal.timeout(1000) }).then((r) => r.ok, () => false);
    if (ok) return;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`Timed out after ${timeoutMs} ms waiting for ${url} to answer 200`);
}
