import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { repoRootOf } from '@velocity/runtime';

const ROOT = repoRootOf(__dirname);

/** The long-running apps `npm start` runs, each its own process. */
export const APPS = ['api', 'provisioner', 'cleanup'] as const;
export type AppName = (typeof APPS)[number];

/** The built main of an app (`npm run build` writes it). */
export function builtMainOf(app: AppName): string {
  return join(ROOT, 'dist', 'apps', app, 'src', 'main.js');
}

/** Starts one app's built main with the given environment; throws, naming `npm run build`, when it is not built. */
export function startApp(app: AppName, env: NodeJS.ProcessEnv, stdio: 'inherit' | 'pipe' = 'inherit'): ChildProcess {
  const main = builtMainOf(app);
  if (!existsSync(main)) throw new Error(`${app} is not built: ${main} is missing (run npm run build)`);
  return spawn(process.execPath, [main], {
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
