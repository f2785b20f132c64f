/**
 * Issue 22, "must show", training jobs: two `teamllm serve` processes (each its own TEAMLLM_HOME)
 * on one PostgreSQL and one shared models folder (set-up: scale-out-harness.ts). An admin's `/train`
 * through one process runs once; `kill -9` of the process running a job → the other takes the job
 * over when its lease runs out, resumes it from its checkpoint and finishes it.
 * (The job runner alone, without `serve`: tests/training/job-leases.test.ts.)
 */
import { existsSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import pg from 'pg';
import { describe, expect, it } from 'vitest';
import { latestCheckpoint } from '../../src/training/checkpoint.ts';
import { directMessage } from '../slack/harness.ts';
import { waitFor } from '../helpers.ts';
import { useScaleOut, type Server } from './scale-out-harness.ts';

const scaleOut = useScaleOut();
const ADMIN = 'UADMIN';

interface JobRow {
  id: number;
  status: string;
  resumes: number | null;
  runDir: string | null;
  owner: string | null;
  result: { metrics?: { steps?: number; resumedFrom?: number }; modelVersion?: string } | null;
}

/** The jobs table as the database has it (lease_owner: host:pid:id of the process that holds or last held the lease). */
async function jobs(databaseUrl: string): Promise<JobRow[]> {
  const client = new pg.Client({ connectionString: databaseUrl });
  await client.connect();
  try {
    const { rows } = await client.query<{ id: string; status: string; resumes: string | null; run_dir: string | null; lease_owner: string | null; result: string | null }>(
      'SELECT id, status, resumes, run_dir, lease_owner, result FROM jobs ORDER BY id',
    );
    return rows.map((r) => ({
      id: Number(r.id),
      status: r.status,
      resumes: r.resumes === null ? null : Number(r.resumes),
      runDir: r.run_dir,
      owner: r.lease_owner,
      result: r.result === null ? null : (JSON.parse(r.result) as JobRow['result']),
    }));
  } finally {
    await client.end();
  }
}

/** The process of a lease owner's name (host:pid:id). */
const pidOf = (owner: string | null) => Number(owner?.split(':').at(-2));

/** The text of the bot's replies in one Slack channel. */
function repliesIn(channel: string): string[] {
  return scaleOut
    .slack()
    .callsTo('chat.postMessage')
    .filter((c) => c.args.channel === channel)
    .map((c) => String(c.args.text ?? ''));
}

describe.skipIf(scaleOut.unavailable !== undefined)('training jobs with two serve processes on one PostgreSQL', () => {
  it("runs an admin's /train through one process exactly once, and the other lists its model", async () => {
    const site = await scaleOut.site({ TEAMLLM_ADMINS: `slack:${ADMIN}` });
    const [a, b] = await Promise.all([site.serve(), site.serve()]);

    const ack = await site.deliver(
      a,
      directMessage('/train pretrain modelSize=tiny maxIters=6 evalInterval=3 checkpointInterval=3 tokenizerVocabSize=400', { user: ADMIN, channel: 'DTRAIN' }),
    );
    expect(ack.status).toBe(200);
    await waitFor(async () => (await jobs(site.databaseUrl)).some((j) => j.status === 'succeeded'), 120_000);

    // One job, run by one of the two processes, one run folder, one registered version.
    const [job, ...others] = await jobs(site.databaseUrl);
    expect(others).toEqual([]);
    expect(job).toMatchObject({ id: 1, status: 'succeeded', resumes: null, result: { modelVersion: 'v1', metrics: { steps: 6 } } });
    expect([a.child.pid, b.child.pid]).toContain(pidOf(job!.owner));
    expect(readdirSync(join(site.modelsDir, 'runs'))).toEqual(['1-pretrain']);

    // The model it registered (shared registry) is listed through the other process — and only it.
    const other = pidOf(job!.owner) === a.child.pid ? b : a;
    expect((await site.deliver(other, directMessage('/model list', { user: ADMIN, channel: 'DLIST' }))).status).toBe(200);
    await waitFor(() => repliesIn('DLIST').length > 0, 20_000);
    const [listed] = repliesIn('DLIST');
    expect(listed).toMatch(/^• v1 — pretrain, [\d,]+ parameters/);
    expect(listed!.split('\n').filter((l) => l.startsWith('• '))).toHaveLength(1);
  }, 240_000);

  it('resumes a job from its checkpoint in the other process after kill -9 of the process running it', async () => {
    const site = await scaleOut.site({ TEAMLLM_ADMINS: `slack:${ADMIN}`, TEAMLLM_JOB_LEASE_SECONDS: '4' });
    const servers = await Promise.all([site.serve(), site.serve()]);
    const maxIters = 4000;
    // Thousands of a tiny model's steps (milliseconds each): long enough that the kill lands mid-run.
    await site.deliver(
      servers[0]!,
      directMessage(`/train pretrain modelSize=tiny maxIters=${maxIters} evalInterval=${maxIters} evalIters=2 checkpointInterval=100 tokenizerVocabSize=400`, {
        user: ADMIN,
        channel: 'DKILL',
      }),
    );
    const runDir = join(site.modelsDir, 'runs', '1-pretrain');
    await waitFor(async () => ((await latestCheckpoint(runDir))?.step ?? 0) >= 200, 120_000);

    const [running] = await jobs(site.databaseUrl);
    expect(running).toMatchObject({ id: 1, status: 'running', runDir });
    const victim: Server = servers.find((s) => s.child.pid === pidOf(running!.owner))!;
    const survivor: Server = servers.find((s) => s !== victim)!;
    expect(victim).toBeDefined();
    victim.child.kill('SIGKILL');
    await victim.exited;
    // The newest checkpoint the dead process left (written atomically: complete or absent).
    const lastCheckpoint = (await latestCheckpoint(runDir))!.step;
    expect(lastCheckpoint).toBeLessThan(maxIters);
    expect(existsSync(join(runDir, 'model'))).toBe(false);

    await waitFor(async () => (await jobs(site.databaseUrl)).some((j) => j.id === 2 && j.status === 'succeeded'), 120_000);
    const [killed, resumed, ...more] = await jobs(site.databaseUrl);
    expect(more).toEqual([]);
    expect(killed).toMatchObject({ id: 1, status: 'interrupted', owner: running!.owner });
    expect(resumed).toMatchObject({ id: 2, status: 'succeeded', resumes: 1, runDir });
    expect(pidOf(resumed!.owner)).toBe(survivor.child.pid);
    // Continued from the dead process's last checkpoint, not from step 0, to the end.
    expect(resumed!.result?.metrics).toMatchObject({ resumedFrom: lastCheckpoint, steps: maxIters });
    expect(lastCheckpoint).toBeGreaterThan(0);
  }, 240_000);
});
