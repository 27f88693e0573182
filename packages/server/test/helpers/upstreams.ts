import { type ChildProcess, spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { once } from 'node:events';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type IncomingMessage, type Server } from 'node:http';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { WebSocketServer } from 'ws';

/** A node:http upstream with the routes the proxy tests need, and what it observed. */
export interface NodeUpstream {
  readonly url: string;
  readonly server: Server;
  /** Requests seen, in order. */
  readonly seen: { method: string; url: string; headers: IncomingMessage['headers']; socket: number }[];
  /** Distinct TCP connections the upstream accepted. */
  connections(): number;
  /** Resolves with the URL of the next request whose body was cut off before its end (aborted). */
  nextAbort(): Promise<string>;
  /** Resolves with the URL of the next request the upstream receives (its head). */
  nextRequest(): Promise<string>;
  /** Resolves when `/upload-gate` has received its first chunk; the request is then held until `release()`. */
  firstChunk: Promise<void>;
  release(): void;
  close(): Promise<void>;
}

/** Deterministic bytes: the same `n` bytes every time, for hashing both ends of a transfer. */
export function pattern(n: number): Buffer {
  const out = Buffer.alloc(n);
  for (let i = 0; i < n; i++) out[i] = (i * 31 + (i >> 8)) & 0xff;
  return out;
}

export async function startNodeUpstream(): Promise<NodeUpstream> {
  const seen: NodeUpstream['seen'] = [];
  let sockets = 0;
  const ids = new WeakMap<object, number>();
  const served = new WeakMap<object, number>();
  let released!: () => void;
  const gate = new Promise<void>((r) => (released = r));
  let firstChunkSeen!: () => void;
  const firstChunk = new Promise<void>((r) => (firstChunkSeen = r));
  const abortWaiters: ((url: string) => void)[] = [];
  const requestWaiters: ((url: string) => void)[] = [];
  const server = createServer((req, res) => {
    seen.push({ method: req.method!, url: req.url!, headers: req.headers, socket: ids.get(req.socket)! });
    requestWaiters.shift()?.(req.url!);
    // A request closed before its body was whole: the proxy gave up on it.
    req.once('close', () => {
      if (!req.complete) abortWaiters.shift()?.(req.url!);
    });
    const path = req.url!.split('?')[0]!;
    const nth = (served.get(req.socket) ?? 0) + 1;
    served.set(req.socket, nth);
    if (path === '/hang') return; // never answers
    if (path === '/drop-reused') {
      // As an upstream closing an idle keep-alive connection just as the proxy reuses it.
      if (nth > 1) req.socket.destroy();
      else res.end('fresh');
      return;
    }
    if (path === '/stall') {
      res.writeHead(200, { 'Content-Length': '100' });
      res.write('the rest never comes');
      return;
    }
    if (path === '/early') {
      // Answers before the request body is in (as an upstream refusing an upload), ends once it is.
      res.writeHead(200, { 'Content-Type': 'text/plain' });
      res.write('early');
      req.resume();
      req.on('end', () => res.end());
      return;
    }
    if (path === '/slow') {
      setTimeout(() => res.end('slow'), 300);
      return;
    }
    if (path === '/reset') {
      res.writeHead(200, { 'Content-Length': '1000' });
      res.write('partial');
      setImmediate(() => req.socket.destroy());
      return;
    }
    if (path === '/hop') {
      res.writeHead(200, {
        Connection: 'X-Up-Hop',
        'X-Up-Hop': 'secret',
        'Keep-Alive': 'timeout=5',
        'X-End': 'kept',
      });
      res.end('hop');
      return;
    }
    if (path.startsWith('/download/')) {
      // Streams in 64 KiB writes, honouring backpressure.
      const total = Number(path.slice('/download/'.length));
      const data = pattern(total);
      res.writeHead(200, { 'Content-Type': 'application/octet-stream' });
      let at = 0;
      const pump = () => {
        while (at < total) {
          const chunk = data.subarray(at, at + 65_536);
          at += chunk.length;
          if (!res.write(chunk)) return void res.once('drain', pump);
        }
        res.end();
      };
      pump();
      return;
    }
    const hash = createHash('sha256');
    let bytes = 0;
    let first = true;
    req.on('data', (chunk: Buffer) => {
      bytes += chunk.length;
      hash.update(chunk);
      if (first && path === '/upload-gate') {
        first = false;
        firstChunkSeen();
      }
    });
    req.on('end', async () => {
      if (path === '/upload-gate') await gate;
      const body = JSON.stringify({
        method: req.method,
        url: req.url,
        headers: req.headers,
        bytes,
        sha256: hash.digest('hex'),
      });
      res.writeHead(200, {
        'Content-Type': 'application/json',
        'Set-Cookie': ['a=1', 'b=2'],
      });
      res.end(body);
    });
  });
  server.on('connection', (socket) => ids.set(socket, ++sockets));
  // WebSocket echo on the same port; an upgrade to /refuse-upgrade is answered 401.
  const wss = new WebSocketServer({
    server,
    verifyClient: ({ req }: { req: IncomingMessage }) => req.url !== '/refuse-upgrade',
  });
  wss.on('connection', (ws, req) => {
    ws.send(`hello ${req.headers['x-forwarded-for'] ?? ''}`);
    ws.on('message', (data, binary) => ws.send(data, { binary }));
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const { port } = server.address() as { port: number };
  return {
    url: `http://127.0.0.1:${port}`,
    server,
    seen,
    connections: () => sockets,
    nextRequest: () => new Promise<string>((r) => requestWaiters.push(r)),
    nextAbort: () => new Promise<string>((r) => abortWaiters.push(r)),
    firstChunk,
    release: () => released(),
    close: async () => {
      for (const client of wss.clients) client.terminate();
      wss.close();
      server.closeAllConnections();
      await new Promise<void>((r) => server.close(() => r()));
    },
  };
}

/** The continents API of the tutorials, as a small Python http.server app (HTTP/1.1, keep-alive). */
const PYTHON_APP = `
import json
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

CONTINENTS = ["Africa", "Antarctica", "Asia", "Australia", "Europe", "North America", "South America"]

class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self):
        if self.path != "/continents":
            self.send_error(404)
            return
        body = json.dumps({
            "continents": CONTINENTS,
            "forwarded_for": self.headers.get("X-Forwarded-For"),
            "authorization": self.headers.get("Authorization"),
        }).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass

server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
print(server.server_address[1], flush=True)
server.serve_forever()
`;

export interface PythonUpstream {
  readonly url: string;
  readonly child: ChildProcess;
  close(): Promise<void>;
}

/** Runs a Python script that prints the port it listens on, then serves until killed. */
export async function runPython(
  name: string,
  script: string,
  env: NodeJS.ProcessEnv = {},
): Promise<PythonUpstream> {
  const dir = mkdtempSync(join(tmpdir(), 'floodgate-py-'));
  const file = join(dir, name);
  writeFileSync(file, script);
  const child = spawn('python3', [file], {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, ...env },
  });
  const port = await new Promise<number>((resolve, reject) => {
    child.once('error', (error) =>
      reject(new Error(`cannot start python3 (${error.message}); install it with: apt-get install python3`)),
    );
    let out = '';
    child.stdout!.on('data', (d) => {
      out += d;
      if (out.includes('\n')) resolve(Number(out.trim()));
    });
    child.once('exit', (code) => reject(new Error(`python3 exited with ${code} before listening`)));
  });
  return {
    url: `http://127.0.0.1:${port}`,
    child,
    close: async () => {
      if (child.exitCode === null) {
        const exited = once(child, 'exit');
        child.kill('SIGTERM');
        await exited;
      }
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

export function startPythonUpstream(): Promise<PythonUpstream> {
  return runPython('continents.py', PYTHON_APP);
}

/**
 * A listener that never accepts, its queue already full (one connection, backlog 0): the kernel drops
 * further SYNs, so a connection to it hangs, as to a host that has gone dark. Node's own servers always
 * accept, hence a Python socket.
 */
export async function startDarkListener(): Promise<PythonUpstream & { fill(): Promise<() => void> }> {
  const listener = await runPython(
    'dark.py',
    [
      'import socket, time',
      's = socket.socket()',
      's.bind(("127.0.0.1", 0))',
      's.listen(0)',
      'print(s.getsockname()[1], flush=True)',
      'time.sleep(3600)',
    ].join('\n'),
  );
  return {
    ...listener,
    /** Fills the accept queue; returns what closes the filling connections. */
    fill: async () => {
      const port = Number(new URL(listener.url).port);
      const first = connect(port, '127.0.0.1');
      await once(first, 'connect');
      // One more, in case the kernel's queue holds one beyond the backlog; it may never connect.
      const second = connect(port, '127.0.0.1');
      second.on('error', () => {});
      return () => {
        first.destroy();
        second.destroy();
      };
    },
  };
}

/** An upstream answering every request with the status it is set to (and its port in the body). */
export interface StatusUpstream {
  readonly url: string;
  /** Requests it answered. */
  served(): number;
  set(status: number): void;
  close(): Promise<void>;
}

export async function startStatusUpstream(status = 200, port = 0): Promise<StatusUpstream> {
  let current = status;
  let served = 0;
  const server = createServer((req, res) => {
    served++;
    req.resume();
    req.on('end', () => res.writeHead(current, { 'Content-Type': 'text/plain' }).end(String(port)));
  });
  server.listen(port, '127.0.0.1');
  await once(server, 'listening');
  port = (server.address() as { port: number }).port;
  return {
    url: `http://127.0.0.1:${port}`,
    served: () => served,
    set: (s) => {
      current = s;
    },
    close: async () => {
      server.closeAllConnections();
      await new Promise<void>((r) => server.close(() => r()));
    },
  };
}

/** A login endpoint: `POST /login` with the password "right" answers 200, any other 401; `hold()` holds answers. */
export interface LoginUpstream {
  readonly url: string;
  /** Login attempts it received. */
  received(): number;
  /** Holds every answer until `release()`. */
  hold(): void;
  /** Resolves when the proxy next gives up on an attempt (its connection closes unanswered). */
  nextAbandoned(): Promise<void>;
  /** Resolves when the head of the next request arrives (its body may never). */
  nextRequest(): Promise<void>;
  release(): void;
  close(): Promise<void>;
}

export async function startLoginUpstream(): Promise<LoginUpstream> {
  let received = 0;
  let held: (() => void)[] | undefined;
  const abandoned: (() => void)[] = [];
  const heads: (() => void)[] = [];
  const server = createServer((req, res) => {
    heads.shift()?.();
    res.once('close', () => {
      if (!res.writableFinished) abandoned.shift()?.();
    });
    let body = '';
    req.setEncoding('utf8');
    req.on('data', (chunk: string) => {
      body += chunk;
    });
    req.on('end', () => {
      if (req.url !== '/login') return void res.writeHead(404).end();
      received++;
      const answer = () => {
        const ok = body === 'password=right';
        res
          .writeHead(ok ? 200 : 401, { 'Content-Type': 'text/plain' })
          .end(ok ? 'welcome' : 'wrong password');
      };
      if (held === undefined) answer();
      else held.push(answer);
    });
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const { port } = server.address() as { port: number };
  return {
    url: `http://127.0.0.1:${port}`,
    received: () => received,
    hold: () => {
      held ??= [];
    },
    nextAbandoned: () => new Promise<void>((r) => abandoned.push(r)),
    nextRequest: () => new Promise<void>((r) => heads.push(r)),
    release: () => {
      const answers = held ?? [];
      held = undefined;
      for (const answer of answers) answer();
    },
    close: async () => {
      server.closeAllConnections();
      await new Promise<void>((r) => server.close(() => r()));
    },
  };
}
