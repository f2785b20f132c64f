/**
 * Shared set-up of the issue 22 "must show" tests: real `teamllm serve` processes, each with its
 * own TEAMLLM_HOME, on one throwaway PostgreSQL (tests/pg-cluster.ts), a fake Slack and a shared
 * models folder. `useScaleOut()` registers the hooks that start and stop the cluster, the fake
 * Slack and every process started through it.
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll } from 'vitest';
import { FakeSlack } from '../slack/fake-slack.ts';
import { eventCallback, nowSec, slackSignature } from '../slack/harness.ts';
import { pgUnavailable, startPgCluster, type PgCluster } from '../pg-cluster.ts';

const BIN = join(import.meta.dirname, '../../bin/teamllm.js');
export const SECRET = 'scale-out-signing-secret';
const run = promisify(execFile);

export interface Server {
  child: ChildProcess;
  url: string;
  home: string;
  /** Resolves when the process has exited (kill -9 included). */
  exited: Promise<void>;
}

/** One deployment: a database and a models folder that every process started through it shares. */
export interface Site {
  databaseUrl: string;
  modelsDir: string;
  env: NodeJS.ProcessEnv;
  /** Starts `teamllm serve` (web and Slack) with its own TEAMLLM_HOME; resolves once it listens. */
  serve(): Promise<Server>;
  /** Runs `teamllm <args>` with this site's environment and `home`; its stdout. */
  cli(home: string, args: string[]): Promise<string>;
  /** POSTs a signed Slack Events API delivery of `event` to one process. */
  deliver(server: Server, event: Record<string, unknown>, eventId?: string): Promise<Response>;
}

export interface ScaleOut {
  /** Why PostgreSQL tests cannot run here (skip), or undefined. Under CI=true a missing PostgreSQL throws. */
  unavailable: string | undefined;
  slack(): FakeSlack;
  /** A fresh database and models folder; `extraEnv` on top of the common environment. */
  site(extraEnv?: NodeJS.ProcessEnv): Promise<Site>;
}

export function useScaleOut(): ScaleOut {
  const unavailable = pgUnavailable();
  let cluster: PgCluster | undefined;
  let slack: FakeSlack | undefined;
  const servers: Server[] = [];

  beforeAll(async () => {
    if (unavailable) return;
    cluster = await startPgCluster();
    slack = await FakeSlack.start();
  }, 120_000);

  afterAll(async () => {
    await Promise.all(
      servers.map(async (s) => {
        if (s.child.exitCode === null && s.child.signalCode === null) {
          s.child.kill('SIGTERM');
          setTimeout(() => s.child.kill('SIGKILL'), 15_000).unref();
        }
        await s.exited;
      }),
    );
    await slack?.close();
    await cluster?.stop();
  }, 60_000);

  async function site(extraEnv: NodeJS.ProcessEnv = {}): Promise<Site> {
    const databaseUrl = await cluster!.createDatabase();
    const modelsDir = mkdtempSync(join(tmpdir(), 'teamllm-shared-models-'));
    const env: NodeJS.ProcessEnv = {
      ...process.env,
      TEAMLLM_DATABASE_URL: databaseUrl,
      TEAMLLM_MODELS_DIR: modelsDir,
      TEAMLLM_QUICKSTART: 'off',
      TEAMLLM_LOG_LEVEL: 'warn',
      SLACK_BOT_TOKEN: 'xoxb-scale-out',
      SLACK_SIGNING_SECRET: SECRET,
      SLACK_API_URL: slack!.apiUrl,
      ...extraEnv,
    };
    delete env.CHROMA_URL;

    async function serve(): Promise<Server> {
      const home = mkdtempSync(join(tmpdir(), 'teamllm-scale-'));
      const child = spawn(process.execPath, [BIN, 'serve', '--port', '0', '--adapters', 'web,slack'], {
        env: { ...env, TEAMLLM_HOME: home },
        cwd: home,
        stdio: ['ignore', 'ignore', 'pipe'],
      });
      const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
      const server: Server = { child, url: '', home, exited };
      servers.push(server);
      let stderr = '';
      const url = await new Promise<string>((resolve, reject) => {
        child.stderr!.on('data', (c: Buffer) => {
          stderr += c.toString();
          const m = /web chat at (http:\/\/\S+)/.exec(stderr);
          if (m) resolve(m[1]!);
        });
        child.once('exit', (code) => reject(new Error(`serve exited ${code}: ${stderr}`)));
        setTimeout(() => reject(new Error(`serve did not start: ${stderr}`)), 90_000).unref();
      });
      server.url = url;
      return server;
    }

    async function cli(home: string, args: string[]): Promise<string> {
      const { stdout } = await run(process.execPath, [BIN, ...args], { env: { ...env, TEAMLLM_HOME: home }, cwd: home });
      return stdout;
    }

    function deliver(server: Server, event: Record<string, unknown>, eventId?: string): Promise<Response> {
      const body = JSON.stringify(eventId === undefined ? eventCallback(event) : eventCallback(event, eventId));
      return fetch(`${server.url}/slack/events`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', ...slackSignature(body, nowSec(), SECRET) },
        body,
      });
    }

    return { databaseUrl, modelsDir, env, serve, cli, deliver };
  }

  return { unavailable, slack: () => slack!, site };
}
