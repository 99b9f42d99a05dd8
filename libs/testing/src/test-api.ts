import type { ChildProcess } from 'node:child_process';
import type { Config } from '@velocity/contracts';
import { startApp, waitForHttp } from '@velocity/ops';

/** The environment an app process reads a config from: every set value as a string. */
export function envOf(config: Config): NodeJS.ProcessEnv {
  return Object.fromEntries(Object.entries(config).filter(([, v]) => v !== undefined).map(([k, v]) => [k, String(v)]));
}

export interface TestApi {
  child: ChildProcess;
  /** `http://127.0.0.1:<API_PORT>` */
  base: string;
  /** What it printed (stdout and stderr), whole lines. */
  output: string[];
}

/**
 * A real api process (the `npm start` entry point) on a test config, answering
 * /health. One that does not start fails with what it printed. Stop it with
 * `stopProcess(api.child)` (scripts/services.ts).
 */
export async function startTestApi(config: Config): Promise<TestApi> {
  const output: string[] = [];
  const child = startApp('api', { ...process.env, ...envOf(config) }, 'pipe');
  for (const stream of [child.stdout, child.stderr]) {
    // Whole lines only: a chunk may end mid-line.
    let rest = '';
    stream?.on('data', (chunk: Buffer) => {
      const parts = (rest + chunk.toString()).split('\n');
      rest = parts.pop()!;
      output.push(...parts.filter(Boolean));
    });
  }
  const base = `http://127.0.0.1:${config.API_PORT}`;
  await waitForHttp(`${base}/health`, 30_000, () => child.exitCode !== null).catch((err: Error) => {
    child.kill('SIGKILL');
    throw new Error(`${err.message}\n${output.join('\n')}`);
  });
  return { child, base, output };
}
