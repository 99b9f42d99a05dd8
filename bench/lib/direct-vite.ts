import { spawn } from 'node:child_process';
import { closeSync, mkdirSync, mkdtempSync, openSync, readFileSync, rmSync, symlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileBytes, templateFiles } from '@velocity/contracts';
import { stopProcess, waitForHttp } from '@velocity/ops';
import { freePort } from '@velocity/runtime';
import { writeProjectFiles, type FixtureFile } from '@velocity/testing';

const ROOT = resolve(__dirname, '../..');

/** "Straight from Vite": a standalone dev server over a copy of a project's files. */
export interface DirectVite {
  /** `http://127.0.0.1:<port>/` */
  url: string;
  pid: number;
  stop(): Promise<void>;
}

/** The React template's files, as a session of the template gets them. */
export function reactTemplateFiles(): FixtureFile[] {
  return templateFiles('react').map((file) => ({ path: file.path, content: fileBytes(file) }));
}

/**
 * Vite's dev server (bench/lib/vite-server.ts) over a temporary copy of `files`,
 * with node_modules linked to the service's: what a machine runs, without the
 * machine and the edge in front. A process of its own, as the machine is: a load
 * client in the same process would share its event loop.
 */
export async function startDirectVite(files: FixtureFile[]): Promise<DirectVite> {
  const dir = mkdtempSync(join(tmpdir(), 'vp-bench-vite-'));
  const root = join(dir, 'project');
  mkdirSync(root);
  writeProjectFiles(root, files);
  symlinkSync(join(ROOT, 'node_modules'), join(root, 'node_modules'), 'dir');
  const port = await freePort();
  const logFile = join(dir, 'vite.log');
  const fd = openSync(logFile, 'a');
  const child = spawn(process.execPath, ['-r', '@swc-node/register', join(__dirname, 'vite-server.ts'), root, String(port)], { cwd: ROOT, stdio: ['ignore', fd, fd] });
  closeSync(fd);
  let stopped: Promise<void> | undefined;
  const stop = () =>
    (stopped ??= stopProcess(child, 10_000).then(() => rmSync(dir, { recursive: true, force: true })));
  const url = `http://127.0.0.1:${port}/`;
  try {
    await waitForHttp(url, 60_000, () => child.exitCode !== null || child.signalCode !== null);
  } catch (err) {
    const output = readFileSync(logFile, 'utf8').slice(-2000);
    await stop();
    throw new Error(`the direct Vite dev server did not start: ${(err as Error).message}\n${output}`);
  }
  return { url, pid: child.pid!, stop };
}
