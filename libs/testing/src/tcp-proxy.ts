import { createServer, connect, type Server, type Socket } from 'node:net';

/**
 * A TCP proxy for fault trials: in front of Postgres or Redis it can cut the
 * network for a while; in front of several api replicas it balances round robin
 * and skips a replica that refuses connections, as a load balancer does.
 */
export class TcpProxy {
  private server?: Server;
  private readonly sockets = new Set<Socket>();
  private cutUntil = 0;
  private next = 0;
  port = 0;

  constructor(private readonly targets: { host: string; port: number }[]) {}

  async listen(port = 0): Promise<number> {
    this.server = createServer((client) => this.accept(client));
    await new Promise<void>((resolve, reject) => {
      this.server!.once('error', reject);
      this.server!.listen(port, '127.0.0.1', () => resolve());
    });
    this.port = (this.server.address() as { port: number }).port;
    return this.port;
  }

  /** Drops every open connection and refuses new ones for `ms`. */
  cut(ms: number): void {
    this.cutUntil = Date.now() + ms;
    for (const socket of this.sockets) socket.destroy();
  }

  /** Ends a cut now: new connections go through again. */
  restore(): void {
    this.cutUntil = 0;
  }

  async close(): Promise<void> {
    for (const socket of this.sockets) socket.destroy();
    await new Promise<void>((resolve) => (this.server ? this.server.close(() => resolve()) : resolve()));
  }

  private accept(client: Socket): void {
    if (Date.now() < this.cutUntil) return void client.destroy();
    this.track(client);
    client.pause();
    this.connectUpstream(client, 0);
  }

  private connectUpstream(client: Socket, tried: number): void {
    if (tried >= this.targets.length) return void client.destroy();
    const target = this.targets[this.next++ % this.targets.length];
    const upstream = connect(target.port, target.host);
    let connected = false;
    upstream.once('error', () => {
      upstream.destroy();
      if (!connected) this.connectUpstream(client, tried + 1);
      else client.destroy();
    });
    upstream.once('connect', () => {
      connected = true;
      this.track(upstream);
      upstream.on('error', () => client.destroy());
      client.on('error', () => upstream.destroy());
      upstream.on('close', () => client.destroy());
      client.on('close', () => upstream.destroy());
      client.pipe(upstream);
      upstream.pipe(client);
      client.resume();
    });
  }

  private track(socket: Socket): void {
    this.sockets.add(socket);
    socket.once('close', () => this.sockets.delete(socket));
  }
}
