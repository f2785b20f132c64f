/**
 * Training jobs shared by several processes through PostgreSQL: each queued job runs in exactly one
 * process (its lease), and when that process dies (kill -9) another takes the job over after the
 * lease runs out and resumes it from its checkpoint in the shared run folder.
 */
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { silentLogger } from '../../src/core/index.ts';
import { PgStore } from '../../src/core/pg-store.ts';
import { JobRunner } from '../../src/training/jobs/job-runner.ts';
import { pgUnavailable, startPgCluster, type PgCluster } from '../pg-cluster.ts';
import { waitFor } from '../helpers.ts';

const STAGE = new URL('./fixtures/counting-stage.ts', import.meta.url).href;
const unavailable = pgUnavailable();
let cluster: PgCluster | undefined;

beforeAll(async () => {
  if (!unavailable) cluster = await startPgCluster();
}, 120_000);
afterAll(async () => {
  await cluster?.stop();
});

function runner(store: PgStore, runsDir: string, owner: string) {
  const home = mkdtempSync(join(tmpdir(), `teamllm-lease-${owner}-`));
  return new JobRunner({ store, home, runsDir, stages: { count: STAGE }, logger: silentLogger, persistEveryMs: 0, leaseMs: 1000, pollMs: 100, owner });
}

describe.skipIf(unavailable !== undefined)('training jobs across processes (PostgreSQL)', () => {
  it('runs each queued job once, in one of two processes', async () => {
    const url = await cluster!.createDatabase();
    const runsDir = mkdtempSync(join(tmpdir(), 'teamllm-runs-'));
    const [sa, sb] = [await PgStore.open(url), await PgStore.open(url)];
    const [a, b] = [runner(sa, runsDir, 'A'), runner(sb, runsDir, 'B')];
    const started: string[] = [];
    a.on('started', (j) => started.push(`A:${j.id}`));
    b.on('started', (j) => started.push(`B:${j.id}`));
    try {
      for (let i = 0; i < 4; i++) await sa.createJob({ kind: 'count', params: { steps: '6', delayMs: '20' }, requestedBy: 'slack:UADMIN' });
      await Promise.all([a.init(), b.init()]);
      await waitFor(async () => (await sa.listJobs(10)).every((j) => j.status === 'succeeded'), 30_000);
      const jobs = await sb.listJobs(10);
      expect(jobs).toHaveLength(4);
      expect(started.map((s) => s.split(':')[1]).sort()).toEqual(['1', '2', '3', '4']);
      for (const job of jobs) expect(job.result).toMatchObject({ metrics: { start: 0, step: 6 } });
    } finally {
      await Promise.all([a.close(), b.close()]);
      await Promise.all([sa.close(), sb.close()]);
    }
  }, 60_000);

  it('resumes a job from its checkpoint in another process after the process running it is killed', async () => {
    const url = await cluster!.createDatabase();
    const runsDir = mkdtempSync(join(tmpdir(), 'teamllm-runs-'));
    const home = mkdtempSync(join(tmpdir(), 'teamllm-lease-doomed-'));
    const child = spawn(process.execPath, ['--import', 'tsx', new URL('./fixtures/run-leased-job.ts', import.meta.url).pathname, url, home, runsDir, STAGE], { stdio: 'ignore' });
    const checkpoint = join(runsDir, '1-count', 'checkpoint.json');
    const exited = new Promise((r) => child.once('exit', r));
    try {
      await waitFor(() => existsSync(checkpoint) && (JSON.parse(readFileSync(checkpoint, 'utf8')) as { step: number }).step >= 3, 30_000);
    } finally {
      child.kill('SIGKILL');
      await exited;
    }
    const store = await PgStore.open(url);
    const survivor = runner(store, runsDir, 'survivor');
    try {
      expect((await store.getJob(1))!.status).toBe('running');
      // This process starts after the dead one's lease ran out: it takes the job over at start
      // and queues its resumption (not merely marking it interrupted).
      await new Promise((r) => setTimeout(r, 1200));
      await survivor.init();
      expect((await store.getJob(2))?.resumes).toBe(1);
      await waitFor(async () => (await store.getJob(2))?.status === 'succeeded', 30_000);
      const killed = (await store.getJob(1))!;
      const resumed = (await store.getJob(2))!;
      expect(killed.status).toBe('interrupted');
      expect(resumed).toMatchObject({ resumes: 1, runDir: killed.runDir, params: killed.params, requestedBy: 'slack:UADMIN' });
      const result = resumed.result as { metrics: { start: number; step: number } };
      expect(result.metrics.step).toBe(80);
      expect(result.metrics.start).toBeGreaterThanOrEqual(3);
      expect(await store.listJobs(10)).toHaveLength(2);
    } finally {
      await survivor.close();
      await store.close();
    }
  }, 90_000);

  it('hands a running job over to another process when its own shuts down (a rolling restart)', async () => {
    const url = await cluster!.createDatabase();
    const runsDir = mkdtempSync(join(tmpdir(), 'teamllm-runs-'));
    const [sa, sb] = [await PgStore.open(url), await PgStore.open(url)];
    const a = runner(sa, runsDir, 'A');
    const b = runner(sb, runsDir, 'B');
    try {
      await a.init();
      await a.enqueue('count', { steps: '60', delayMs: '25' }, 'slack:UADMIN');
      await waitFor(() => (a.current?.progress?.step ?? 0) >= 3, 20_000);
      await a.close();
      expect((await sa.getJob(1))!.status).toBe('interrupted');
      expect(await sa.getJob(2)).toMatchObject({ status: 'queued', resumes: 1 });
      await b.init();
      await waitFor(async () => (await sb.getJob(2))?.status === 'succeeded', 30_000);
      const result = (await sb.getJob(2))!.result as { metrics: { start: number; step: number } };
      expect(result.metrics.step).toBe(60);
      expect(result.metrics.start).toBeGreaterThanOrEqual(3);
    } finally {
      await Promise.all([a.close(), b.close()]);
      await Promise.all([sa.close(), sb.close()]);
    }
  }, 60_000);
});
