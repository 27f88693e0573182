import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer, Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const INSTALL =
  'install it with: apt-get install redis-server (Debian/Ubuntu) or see https://redis.io/download';

/** Fails with a message saying how to get `redis-server` / `redis-cli` when they are missing. */
export function requireBinary(name: 'redis-server' | 'redis-cli'): string {
  try {
    execFileSync('sh', ['-c', `command -v ${name}`], { stdio: 'pipe' });
    return name;
  } catch {
    throw new Error(`${name} was not found on PATH; these tests start their own Redis servers: ${INSTALL}`);
  }
}

/** A free loopback port (the OS picks one; it is released before use, so a tiny race remains). */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.unref();
    server.on('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as { port: number };
      server.close(() => resolve(port));
    });
  });
}

function ping(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = new Socket();
    const done = (ok: boolean) => {
      socket.destroy();
      resolve(ok);
    };
    socket.setTimeout(500, () => done(false));
    socket.once('error', () => done(false));
    socket.connect(port, '127.0.0.1', () => socket.write('PING\r\n'));
    socket.once('data', (data) => done(data.toString().startsWith('+PONG')));
  });
}

async function waitUntil(check: () => Promise<boolean>, what: string, ms = 10_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (Date.now() < deadline) {
    if (await check()) return;
    await new Promise((r) => setTimeout(r, 25));
  }
  throw new Error(`timed out waiting for ${what}`);
}

/** A redis-server this test process started, on its own port and directory; `stop` kills exactly it. */
export class RedisServer {
  readonly port: number;
  readonly dir: string;
  readonly #extra: readonly string[];
  #child: ChildProcess | undefined;

  private constructor(port: number, dir: string, extra: readonly string[]) {
    this.port = port;
    this.dir = dir;
    this.#extra = extra;
  }

  static async start(extra: readonly string[] = []): Promise<RedisServer> {
    requireBinary('redis-server');
    const dir = mkdtempSync(join(tmpdir(), 'floodgate-redis-'));
    const server = new RedisServer(await freePort(), dir, extra);
    await server.restart();
    return server;
  }

  get url(): string {
    return `redis://127.0.0.1:${this.port}`;
  }

  get running(): boolean {
    return this.#child !== undefined;
  }

  /** Starts the server again on the same port (after `kill`), with an empty dataset and script cache. */
  async restart(): Promise<void> {
    const args = [
      '--port',
      String(this.port),
      '--bind',
      '127.0.0.1',
      '--save',
      '',
      '--appendonly',
      'no',
      '--dir',
      this.dir,
      ...this.#extra,
    ];
    const child = spawn('redis-server', args, { stdio: ['ignore', 'ignore', 'inherit'] });
    this.#child = child;
    child.once('exit', () => {
      if (this.#child === child) this.#child = undefined;
    });
    await waitUntil(() => ping(this.port), `redis-server on port ${this.port}`);
  }

  /** Kills the server at once (SIGKILL), as a crash would, and waits for it to be gone. */
  async kill(): Promise<void> {
    const child = this.#child;
    if (child === undefined) return;
    const exited = new Promise((r) => child.once('exit', r));
    child.kill('SIGKILL');
    await exited;
    this.#child = undefined;
  }

  /** Freezes the server (SIGSTOP): connections stay open and nothing answers, as on a stalled host. */
  pause(): void {
    this.#child?.kill('SIGSTOP');
  }

  resume(): void {
    this.#child?.kill('SIGCONT');
  }

  async stop(): Promise<void> {
    this.resume();
    await this.kill();
    rmSync(this.dir, { recursive: true, force: true });
  }
}

/** A Redis Cluster of `masters` nodes, no replicas, created with `redis-cli --cluster create`. */
export class RedisCluster {
  readonly nodes: RedisServer[];

  private constructor(nodes: RedisServer[]) {
    this.nodes = nodes;
  }

  static async start(masters = 3): Promise<RedisCluster> {
    requireBinary('redis-cli');
    const nodes: RedisServer[] = [];
    for (let i = 0; i < masters; i++) {
      nodes.push(
        await RedisServer.start([
          '--cluster-enabled',
          'yes',
          '--cluster-config-file',
          'nodes.conf',
          '--cluster-node-timeout',
          '2000',
        ]),
      );
    }
    const cluster = new RedisCluster(nodes);
    try {
      execFileSync(
        'redis-cli',
        [
          '--cluster',
          'create',
          ...nodes.map((n) => `127.0.0.1:${n.port}`),
          '--cluster-replicas',
          '0',
          '--cluster-yes',
        ],
        { stdio: 'pipe' },
      );
      for (const node of nodes) {
        await waitUntil(async () => {
          const info = execFileSync('redis-cli', ['-p', String(node.port), 'cluster', 'info'], {
            encoding: 'utf8',
          });
          return info.includes('cluster_state:ok');
        }, `cluster state ok on port ${node.port}`);
      }
    } catch (error) {
      await cluster.stop();
      throw error;
    }
    return cluster;
  }

  get ports(): number[] {
    return this.nodes.map((n) => n.port);
  }

  async stop(): Promise<void> {
    await Promise.all(this.nodes.map((n) => n.stop()));
  }
}
