import type { ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Queue } from 'bullmq';
import Redis from 'ioredis';
import { LocalMachineProvider } from '@velocity/machines';
import { PostgresSessionStore } from '@velocity/session-store';
import { QueueName, sleep } from '@velocity/contracts';
import { startApp, stopProcess, waitForHttp, type AppName } from '@velocity/ops';
import { freePort } from '@velocity/runtime';
import { TcpProxy } from '@velocity/testing';
import { TrialRedis } from './redis-server';

export interface ClusterOptions {
  /** The database the trial uses (migrated); services reach it through a proxy that can cut it. */
  databaseUrl: string;
  queuePrefix: string;
  provisioners: number;
  apis: number;
  /** Extra environment for every service (timeouts, FAULTS...). */
  env?: NodeJS.ProcessEnv;
}

interface Service {
  app: AppName;
  child: ChildProcess;
  port?: number;
  output: string[];
}

/**
 * The whole system in real processes for fault trials, with handles to break
 * it: its own Redis (restartable) and Postgres, each behind a cuttable proxy, api
 * replicas behind a balancing proxy, provisioners to kill.
 */
export class FaultCluster {
  readonly redis = new TrialRedis();
  readonly services = new Set<Service>();
  readonly machinesDir = mkdtempSync(join(tmpdir(), 'vp-faults-'));
  readonly machines = new LocalMachineProvider({ dir: this.machinesDir });
  readonly store: PostgresSessionStore;
  pgProxy!: TcpProxy;
  /** Every service reaches Redis through it (the trial Redis restarts behind it). */
  redisProxy!: TcpProxy;
  balancer!: TcpProxy;
  apiPorts: number[] = [];
  private observerRedis?: Redis;
  private sessionsQueue?: Queue;

  private constructor(private readonly options: ClusterOptions) {
    this.store = new PostgresSessionStore(options.databaseUrl, { max: 4 });
  }

  static async start(options: ClusterOptions): Promise<FaultCluster> {
    const cluster = new FaultCluster(options);
    try {
      await cluster.boot();
    } catch (err) {
      await cluster.stop();
      throw err;
    }
    return cluster;
  }

  get baseUrl(): string {
    return `http://127.0.0.1:${this.balancer.port}`;
  }

  get queue(): Queue {
    return this.sessionsQueue!;
  }

  private async boot(): Promise<void> {
    await this.redis.start();
    const db = new URL(this.options.databaseUrl);
    this.pgProxy = new TcpProxy([{ host: db.hostname, port: Number(db.port || 5432) }]);
    await this.pgProxy.listen();
    this.redisProxy = new TcpProxy([{ host: '127.0.0.1', port: this.redis.port }]);
    await this.redisProxy.listen();
    this.apiPorts = await Promise.all(Array.from({ length: this.options.apis }, () => freePort()));
    this.balancer = new TcpProxy(this.apiPorts.map((port) => ({ host: '127.0.0.1', port })));
    await this.balancer.listen();
    this.observerRedis = new Redis(this.redis.url, { maxRetriesPerRequest: null });
    this.sessionsQueue = new Queue(QueueName.Sessions, { connection: this.observerRedis, prefix: this.options.queuePrefix });
    // The trial restarts this Redis on purpose: the observer just reconnects.
    this.observerRedis.on('error', () => undefined);
    this.sessionsQueue.on('error', () => undefined);
    await Promise.all([
      ...this.apiPorts.map((port) => this.startApi(port)),
      ...Array.from({ length: this.options.provisioners }, () => this.startProvisioner()),
      this.startService('cleanup', /cleanup ready/),
    ]);
  }

  env(): NodeJS.ProcessEnv {
    const db = new URL(this.options.databaseUrl);
    db.host = `127.0.0.1:${this.pgProxy.port}`;
    return {
      ...process.env,
      NODE_ENV: 'test',
      LOG_LEVEL: 'info',
      DATABASE_URL: db.toString(),
      REDIS_URL: `redis://127.0.0.1:${this.redisProxy.port}`,
      QUEUE_PREFIX: this.options.queuePrefix,
      PUBLIC_URL: this.baseUrl,
      API_INTERNAL_URL: this.baseUrl,
      LOCAL_MACHINES_DIR: this.machinesDir,
      // Machines reach the api replicas through the balancer (API_INTERNAL_URL), which outlives a replica killed on
      // purpose; a sandboxed machine has no network and reaches one api only, on its socket.
      MACHINE_SANDBOX: 'none',
      // Several provisioners on one host: no operator servers (they would all want the default port).
      PROVISIONER_METRICS_PORT: '0',
      CLEANUP_METRICS_PORT: '0',
      ...this.options.env,
    };
  }

  async startApi(port: number): Promise<void> {
    const service = this.spawn('api', { API_PORT: String(port) });
    service.port = port;
    await waitForHttp(`http://127.0.0.1:${port}/health`, 30_000, () => service.child.exitCode !== null);
  }

  startProvisioner(): Promise<Service> {
    return this.startService('provisioner', /provisioner ready/);
  }

  provisioners(): Service[] {
    return [...this.services].filter((s) => s.app === 'provisioner' && s.child.exitCode === null && s.child.signalCode === null);
  }

  /** Signals (kill -9 by default) the provisioner that holds the session's job; null if no one holds it. */
  async killProvisionerOf(sessionId: string, signal: NodeJS.Signals = 'SIGKILL'): Promise<ChildProcess | null> {
    const job = await this.queue.getJob(sessionId);
    const pid = Number(job?.processedBy?.match(/^provisioner-(\d+)$/)?.[1]);
    const service = this.provisioners().find((s) => s.child.pid === pid);
    if (!service) return null;
    service.child.kill(signal);
    return service.child;
  }

  /** kill -9 of an api replica; the balancer sends its clients to the others. */
  killApi(index: number): void {
    const service = [...this.services].find((s) => s.app === 'api' && s.port === this.apiPorts[index] && s.child.exitCode === null && s.child.signalCode === null);
    service?.child.kill('SIGKILL');
  }

  /** Output of the services, for a failing trial to show. */
  output(app?: AppName): string[] {
    return [...this.services].filter((s) => !app || s.app === app).flatMap((s) => s.output.map((l) => `${s.app}[${s.child.pid}] ${l}`));
  }

  async stop(): Promise<void> {
    await Promise.all([...this.services].map((s) => stopProcess(s.child, 5000)));
    await Promise.all((await this.machines.list().catch(() => [])).map((m) => this.machines.destroy(m.id)));
    await this.sessionsQueue?.close().catch(() => undefined);
    this.observerRedis?.disconnect();
    await this.balancer?.close();
    await this.pgProxy?.close();
    await this.redisProxy?.close();
    await this.redis.stop();
    await this.store.close();
    // Retried as the provider's destroy is: a killed machine's last write may land while the folder goes.
    rmSync(this.machinesDir, { recursive: true, force: true, maxRetries: 3 });
  }

  private async startService(app: AppName, ready: RegExp): Promise<Service> {
    const service = this.spawn(app, {});
    const deadline = Date.now() + 30_000;
    while (!service.output.some((line) => ready.test(line))) {
      if (service.child.exitCode !== null) throw new Error(`${app} exited while starting:\n${service.output.join('\n')}`);
      if (Date.now() > deadline) throw new Error(`Timed out after 30000 ms waiting for ${app} to log ${ready}`);
      await sleep(50);
    }
    return service;
  }

  private spawn(app: AppName, env: NodeJS.ProcessEnv): Service {
    const child = startApp(app, { ...this.env(), ...env }, 'pipe');
    const service: Service = { app, child, output: [] };
    const keep = (chunk: Buffer) => {
      service.output.push(...chunk.toString().trim().split('\n'));
      if (service.output.length > 2000) service.output.splice(0, service.output.length - 2000);
    };
    child.stdout?.on('data', keep);
    child.stderr?.on('data', keep);
    this.services.add(service);
    return service;
  }
}
