import { spawn, type ChildProcess } from 'node:child_process';
import { pingRedis } from '@velocity/ops';
import { sleep } from '@velocity/contracts';
import { freePort } from '@velocity/runtime';

/**
 * A Redis server of the trial's own, on a free port, so it can be killed and
 * restarted (losing everything, as this Redis keeps nothing on disk) without
 * touching the machine's Redis.
 */
export class TrialRedis {
  private child?: ChildProcess;
  port = 0;

  get url(): string {
    return `redis://127.0.0.1:${this.port}`;
  }

  async start(): Promise<void> {
    if (!this.port) this.port = await freePort();
    this.child = spawn('redis-server', ['--port', String(this.port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'], {
      stdio: 'ignore',
    });
    const deadline = Date.now() + 10_000;
    while (Date.now() < deadline) {
      if (await pingRedis(this.url, 500).then(() => true, () => false)) return;
      await sleep(50);
    }
    throw new Error(`Timed out after 10000 ms waiting for the trial Redis on port ${this.port}`);
  }

  /** kill -9 and start again on the same port: every key is gone. */
  async restart(downMs = 500): Promise<void> {
    await this.stop('SIGKILL');
    await sleep(downMs);
    await this.start();
  }

  async stop(signal: NodeJS.Signals = 'SIGTERM'): Promise<void> {
    const child = this.child;
    if (!child || child.exitCode !== null || child.signalCode !== null) return;
    await new Promise<void>((resolve) => {
      child.once('exit', () => resolve());
      child.kill(signal);
    });
  }
}
