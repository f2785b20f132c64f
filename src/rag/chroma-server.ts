/**
 * The Chroma server bundled in the `chromadb` npm package (`chroma run`), started as a child
 * process when no CHROMA_URL is configured: data persisted under the given folder, listening on
 * a free port of the loopback interface only, restarted when it dies, stopped with the app.
 *
 * (package.json pins chromadb-js-bindings-linux-x64-gnu to 1.0.5: newer bindings need glibc 2.38+.)
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { createServer } from 'node:net';
import { dirname, join } from 'node:path';
import { ChromaClient } from 'chromadb';

export interface ChromaServer {
  url: string;
  port: number;
  /** The running child's process id (undefined while it is being restarted). */
  readonly pid: number | undefined;
  /** How many times the supervisor restarted the child after it died. */
  readonly restarts: number;
  stop(): Promise<void>;
}

export interface StartChromaOptions {
  /** Folder the server persists its data in (created if missing). */
  path: string;
  /** Default: a free port. */
  port?: number;
  startTimeoutMs?: number;
  log?: (message: string) => void;
  /**
   * Restart the child when it dies (default true): first after `restartDelayMs`, doubling per
   * failed restart up to `maxRestartDelayMs`, reset once a restart succeeds. Same port and data
   * folder, so clients need not reconnect and no vector is lost.
   */
  supervise?: boolean;
  restartDelayMs?: number;
  maxRestartDelayMs?: number;
}

/** A port the OS says is free right now. */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.unref();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      const port = typeof address === 'object' && address ? address.port : 0;
      server.close(() => resolve(port));
    });
  });
}

/** The `chroma` command of the installed chromadb package (its package.json is not exported: walk up to it). */
function chromaCli(): string {
  let dir = dirname(createRequire(import.meta.url).resolve('chromadb'));
  while (!existsSync(join(dir, 'package.json'))) {
    if (dirname(dir) === dir) throw new Error('cannot find the chromadb package folder');
    dir = dirname(dir);
  }
  const pkg = JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8')) as { bin?: Record<string, string> };
  return join(dir, pkg.bin?.chroma ?? 'dist/cli.mjs');
}

const running = new Set<ChildProcess>();
let exitHookInstalled = false;

/** A server child must not outlive the app, even when the app exits without closing it. */
function installExitHook(): void {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  process.once('exit', () => {
    for (const child of running) child.kill('SIGKILL');
  });
}

interface ChromaChild {
  child: ChildProcess;
  /** Resolves when the child exits, for any reason. */
  exit: Promise<void>;
}

/** Spawns `chroma run` and waits until it answers a heartbeat; rejects (child killed) otherwise. */
async function spawnChroma(path: string, port: number, startTimeoutMs: number): Promise<ChromaChild> {
  const child = spawn(process.execPath, [chromaCli(), 'run', '--path', path, '--host', '127.0.0.1', '--port', String(port)], {
    stdio: ['ignore', 'pipe', 'pipe'],
    // No update checks or telemetry: nothing leaves the machine.
    env: { ...process.env, ANONYMIZED_TELEMETRY: 'False', CHROMA_TELEMETRY: 'False' },
  });
  running.add(child);
  installExitHook();
  let output = '';
  const keep = (chunk: Buffer) => {
    output = (output + chunk.toString()).slice(-4000);
  };
  child.stdout!.on('data', keep);
  child.stderr!.on('data', keep);
  let exited = false;
  const exit = new Promise<void>((resolve) =>
    child.once('exit', () => {
      exited = true;
      running.delete(child);
      resolve();
    }),
  );
  const url = `http://127.0.0.1:${port}`;
  const client = new ChromaClient({ host: '127.0.0.1', port });
  const deadline = Date.now() + startTimeoutMs;
  for (;;) {
    if (exited) throw new Error(`the bundled Chroma server exited while starting: ${output.replace(/\x1b\[[0-9;]*m/g, '').trim().slice(-800)}`);
    try {
      await client.heartbeat();
      return { child, exit };
    } catch {
      if (Date.now() > deadline) {
        child.kill('SIGKILL');
        throw new Error(`the bundled Chroma server did not answer on ${url} within ${startTimeoutMs} ms`);
      }
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
  }
}

/**
 * Starts the bundled server and supervises it: a child that dies (killed, crashed, OOM) is
 * restarted with backoff on the same port and data folder. Until it is back, searches fall back
 * to BM25 (open-knowledge-base.ts notices on its own, by the failed query).
 */
export async function startChromaServer(options: StartChromaOptions): Promise<ChromaServer> {
  mkdirSync(options.path, { recursive: true });
  const port = options.port ?? (await freePort());
  const startTimeoutMs = options.startTimeoutMs ?? 30_000;
  const url = `http://127.0.0.1:${port}`;
  let current: ChromaChild | undefined = await spawnChroma(options.path, port, startTimeoutMs);
  options.log?.(`started the bundled Chroma server on ${url} (data in ${options.path})`);
  let stopped = false;
  let restarts = 0;
  let timer: NodeJS.Timeout | undefined;
  const baseDelay = options.restartDelayMs ?? 500;
  const maxDelay = options.maxRestartDelayMs ?? 30_000;

  const restartAfter = (delay: number) => {
    timer = setTimeout(() => {
      timer = undefined;
      if (stopped) return;
      spawnChroma(options.path, port, startTimeoutMs).then(
        (next) => {
          if (stopped) {
            next.child.kill('SIGKILL');
            return;
          }
          restarts += 1;
          current = next;
          watch(next);
          options.log?.(`restarted the bundled Chroma server on ${url} (restart ${restarts}; data in ${options.path})`);
        },
        (err: unknown) => {
          options.log?.(`could not restart the bundled Chroma server: ${(err as Error).message}; trying again in ${Math.min(delay * 2, maxDelay)} ms`);
          restartAfter(Math.min(delay * 2, maxDelay));
        },
      );
    }, delay);
    // A pending restart must not keep a finished process alive.
    timer.unref();
  };
  const watch = (c: ChromaChild) => {
    void c.exit.then(() => {
      if (stopped || current !== c) return;
      current = undefined;
      options.log?.(`the bundled Chroma server (pid ${c.child.pid}) exited with ${c.child.exitCode ?? c.child.signalCode}; restarting it in ${baseDelay} ms`);
      if (options.supervise !== false) restartAfter(baseDelay);
    });
  };
  watch(current);

  let stopping: Promise<void> | undefined;
  return {
    url,
    port,
    get pid() {
      return current?.child.pid;
    },
    get restarts() {
      return restarts;
    },
    stop() {
      stopping ??= (async () => {
        stopped = true;
        if (timer) clearTimeout(timer);
        const c = current;
        if (!c || c.child.exitCode !== null || c.child.signalCode !== null) return;
        c.child.kill('SIGTERM');
        const kill = setTimeout(() => c.child.kill('SIGKILL'), 5_000);
        await c.exit;
        clearTimeout(kill);
      })();
      return stopping;
    },
  };
}

/** A client for `http(s)://host:port`, the form CHROMA_URL takes. */
export function chromaClientFor(url: string): ChromaClient {
  const parsed = new URL(url);
  const ssl = parsed.protocol === 'https:';
  const port = parsed.port ? Number(parsed.port) : ssl ? 443 : 80;
  return new ChromaClient({ host: parsed.hostname, port, ssl });
}
