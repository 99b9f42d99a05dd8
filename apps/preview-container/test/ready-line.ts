import { spawn, type ChildProcess } from 'node:child_process';

/**
 * Runs `script` in a node process of its own (Vite is an ES module Jest cannot
 * load) and resolves with the child and the JSON it prints on its `READY <json>`
 * line; rejects when it exits first or after `timeoutMs`, naming `what` and its stderr.
 */
export function startReadyChild<T>(script: string, options: { cwd: string; env: NodeJS.ProcessEnv; what: string; timeoutMs: number }): Promise<{ child: ChildProcess; ready: T }> {
  const child = spawn(process.execPath, ['-r', '@swc-node/register', '-e', script], { cwd: options.cwd, env: options.env, stdio: ['pipe', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  return new Promise((resolveReady, reject) => {
    const timer = setTimeout(() => reject(new Error(`${options.what} not ready within ${options.timeoutMs / 1000} s: ${stderr}`)), options.timeoutMs);
    child.stderr!.on('data', (chunk) => (stderr += chunk));
    child.stdout!.on('data', (chunk) => {
      stdout += chunk;
      const line = stdout.split('\n').find((l) => l.startsWith('READY '));
      if (line) {
        clearTimeout(timer);
        resolveReady({ child, ready: JSON.parse(line.slice('READY '.length)) });
      }
    });
    child.on('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`${options.what} process exited (${code}): ${stderr}`));
    });
  });
}

/** Ends a child started by startReadyChild: closing its stdin makes it close its servers and exit (killed after 10 s). */
export async function stopReadyChild(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise((r) => child.once('exit', r));
  child.stdin!.end();
  const timer = setTimeout(() => child.kill('SIGKILL'), 10_000);
  await exited;
  clearTimeout(timer);
}
