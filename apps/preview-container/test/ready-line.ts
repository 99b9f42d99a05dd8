import type { ChildProcess } from 'node:child_process';

/**
 * Resolves with the JSON a child process prints on its `READY <json>` line;
 * rejects when it exits first or after `timeoutMs`, naming `what` and its stderr.
 */
export function readyLineOf<T>(child: ChildProcess, what: string, timeoutMs: number): Promise<T> {
  let stdout = '';
  let stderr = '';
  return new Promise((resolveReady, reject) => {
    const timer = setTimeout(() => reject(new Error(`${what} not ready within ${timeoutMs / 1000} s: ${stderr}`)), timeoutMs);
    child.stderr!.on('data', (chunk) => (stderr += chunk));
    child.stdout!.on('data', (chunk) => {
      stdout += chunk;
      const line = stdout.split('\n').find((l) => l.startsWith('READY '));
      if (line) {
        clearTimeout(timer);
        resolveReady(JSON.parse(line.slice('READY '.length)));
      }
    });
    child.on('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`${what} process exited (${code}): ${stderr}`));
    });
  });
}
