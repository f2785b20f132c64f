/**
 * A throwaway PostgreSQL cluster for tests: initdb into a temp folder, pg_ctl start on a free
 * localhost port, stop and delete at the end. Uses the Debian binaries under
 * /usr/lib/postgresql/<version>/bin (or TEAMLLM_PG_BIN). Under CI=true a missing PostgreSQL fails
 * the run (.ci/run installs it); elsewhere the PostgreSQL tests skip with a clear message.
 */
import { spawnSync } from 'node:child_process';
import { chownSync, existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';

export interface PgCluster {
  /** postgres://… of the cluster's `postgres` database. */
  url: string;
  port: number;
  /** A new, empty database on the cluster; its URL. */
  createDatabase(): Promise<string>;
  stop(): Promise<void>;
}

/** The folder with initdb and pg_ctl, newest version first, or undefined. */
export function findPgBin(): string | undefined {
  const explicit = process.env.TEAMLLM_PG_BIN;
  if (explicit) return existsSync(join(explicit, 'pg_ctl')) ? explicit : undefined;
  const root = '/usr/lib/postgresql';
  if (!existsSync(root)) return undefined;
  const versions = readdirSync(root)
    .filter((v) => existsSync(join(root, v, 'bin', 'initdb')) && existsSync(join(root, v, 'bin', 'pg_ctl')))
    .sort((a, b) => Number(b) - Number(a));
  return versions[0] ? join(root, versions[0], 'bin') : undefined;
}

/** Why PostgreSQL tests cannot run here, or undefined when they can. Under CI=true this throws instead. */
export function pgUnavailable(): string | undefined {
  if (findPgBin()) return undefined;
  const reason = 'PostgreSQL binaries not found (no /usr/lib/postgresql/*/bin/pg_ctl; install Debian `postgresql` or set TEAMLLM_PG_BIN)';
  if (process.env.CI === 'true') throw new Error(`${reason}: CI must run the PostgreSQL tests`);
  console.warn(`skipping PostgreSQL tests: ${reason}`);
  return reason;
}

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      const port = typeof address === 'object' && address ? address.port : 0;
      server.close(() => resolve(port));
    });
  });
}

/** initdb refuses to run as root: run the server as the `postgres` (or `nobody`) user then. */
function serverUser(): { uid: number; gid: number } | undefined {
  if (typeof process.getuid !== 'function' || process.getuid() !== 0) return undefined;
  const passwd = readFileSync('/etc/passwd', 'utf8').split('\n');
  for (const name of ['postgres', 'nobody']) {
    const line = passwd.find((l) => l.startsWith(`${name}:`));
    if (line) {
      const [, , uid, gid] = line.split(':');
      return { uid: Number(uid), gid: Number(gid) };
    }
  }
  throw new Error('running as root and no postgres or nobody user to run PostgreSQL as');
}

let databases = 0;

export async function startPgCluster(): Promise<PgCluster> {
  const bin = findPgBin();
  if (!bin) throw new Error('PostgreSQL binaries not found');
  const dir = mkdtempSync(join(tmpdir(), 'teamllm-pg-'));
  const data = join(dir, 'data');
  const user = serverUser();
  if (user) chownSync(dir, user.uid, user.gid);
  const run = (tool: string, args: string[]) => {
    const result = spawnSync(join(bin, tool), args, { encoding: 'utf8', cwd: dir, ...(user ?? {}), timeout: 60_000 });
    if (result.status !== 0) throw new Error(`${tool} failed (${result.status}): ${result.stderr || result.stdout}`);
  };
  run('initdb', ['-D', data, '-U', 'teamllm', '--auth=trust', '-E', 'UTF8', '--no-sync', '--no-instructions']);
  const port = await freePort();
  const options = `-p ${port} -k ${dir} -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=200`;
  run('pg_ctl', ['-D', data, '-o', options, '-l', join(dir, 'server.log'), '-w', '-t', '60', 'start']);
  const url = `postgres://teamllm@127.0.0.1:${port}/postgres`;
  let stopped = false;
  return {
    url,
    port,
    async createDatabase() {
      const name = `t${process.pid}_${++databases}`;
      const client = new pg.Client({ connectionString: url });
      await client.connect();
      try {
        await client.query(`CREATE DATABASE ${name}`);
      } finally {
        await client.end();
      }
      return `postgres://teamllm@127.0.0.1:${port}/${name}`;
    },
    async stop() {
      if (stopped) return;
      stopped = true;
      try {
        run('pg_ctl', ['-D', data, '-m', 'immediate', '-w', 'stop']);
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
    },
  };
}
