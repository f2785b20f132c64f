import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { silentLogger } from '../../src/core/index.ts';
import { SqliteStore } from '../../src/core/sqlite-store.ts';
import { ChatTrainingService } from '../../src/training/chat-training-service.ts';
import { JobRunner } from '../../src/training/jobs/job-runner.ts';
import { latestCheckpoint } from '../../src/training/checkpoint.ts';
import { makeBot, message, RecordingTarget, waitFor } from '../helpers.ts';

const STAGE = new URL('./fixtures/counting-stage.ts', import.meta.url).href;
const ADMIN = { id: 'slack:UADMIN', isAdmin: true };

function setup(home = mkdtempSync(join(tmpdir(), 'teamllm-jobs-'))) {
  const store = new SqliteStore(join(home, 'teamllm.db'));
  const runner = new JobRunner({ store, home, stages: { count: STAGE }, logger: silentLogger, persistEveryMs: 0 });
  const service = new ChatTrainingService(runner, store, silentLogger, { updateEveryMs: 20 });
  return { home, store, runner, service };
}

describe('training jobs', () => {
  it('runs a job in a worker thread, reports progress into its chat message, and records the result', async () => {
    const { store, runner, service } = setup();
    await runner.init();
    const target = new RecordingTarget();
    const reply = await service.start('count', { steps: '8', delayMs: '15' }, ADMIN, target);
    expect(reply).toMatch(/^Started job #1 \(count\)/);
    await runner.idle();
    await waitFor(() => target.last?.text.includes('succeeded') ?? false);
    const job = (await store.getJob(1))!;
    expect(job).toMatchObject({ status: 'succeeded', kind: 'count', requestedBy: 'slack:UADMIN', result: { summary: 'counted to 8 (started at 0)' } });
    expect(job.progress).toMatchObject({ step: 8, totalSteps: 8 });
    // One message, edited in place: the first post, then updates that show progress.
    expect(target.events.filter((e) => e.kind === 'post')).toHaveLength(1);
    expect(target.events.some((e) => /count ▓+░* \d\/8/.test(e.content.text))).toBe(true);
    expect(target.last!.text).toContain('counted to 8');
    expect((await store.auditLog(1))[0]).toMatchObject({ actor: 'slack:UADMIN', action: 'train', detail: { job: 1, kind: 'count' } });
  });

  it('queues a second job behind the first and reports a failing stage', async () => {
    const { store, runner, service } = setup();
    await runner.init();
    await service.start('count', { steps: '5', delayMs: '10' }, ADMIN);
    expect(await service.start('count', { fail: 'true' }, ADMIN)).toMatch(/Queued job #2 \(count\) behind job #1/);
    expect(await service.start('nonsense', {}, ADMIN)).toMatch(/no "nonsense" training here/);
    expect(await service.start('count', { 'bad key!': '1' }, ADMIN)).toMatch(/not valid/);
    await runner.idle();
    expect((await store.getJob(1))!.status).toBe('succeeded');
    expect(await store.getJob(2)).toMatchObject({ status: 'failed', error: 'the data file is empty' });
    expect(await service.status()).toContain('#2 count — failed (the data file is empty)');
  });

  it('stops cleanly on /train stop, keeping the checkpoint, and /train resume continues from it', async () => {
    const { store, runner, service } = setup();
    await runner.init();
    await service.start('count', { steps: '200', delayMs: '10' }, ADMIN);
    await waitFor(() => (runner.current?.progress?.step ?? 0) >= 3);
    expect(await service.stop(ADMIN)).toMatch(/Stopped job #1 \(count\): stopped/);
    const stopped = (await store.getJob(1))!;
    expect(stopped.status).toBe('stopped');
    const at = (JSON.parse(readFileSync(join(stopped.runDir!, 'checkpoint.json'), 'utf8')) as { step: number }).step;
    expect(at).toBeGreaterThanOrEqual(3);

    await store.updateJob(1, { params: { steps: String(at + 4), delayMs: '5' } });
    expect(await service.resume(ADMIN)).toBe('Resuming job #1 (count) as job #2 from its last checkpoint.');
    await runner.idle();
    expect(await store.getJob(2)).toMatchObject({ status: 'succeeded', resumes: 1, runDir: stopped.runDir, result: { summary: `counted to ${at + 4} (started at ${at})` } });
    expect(await service.resume(ADMIN)).toBe('There is no stopped or interrupted job to resume.');
  });

  // The product's one worker path (JobRunner + stage-worker) running the real pretrain stage:
  // progress crosses the thread, /train stop aborts it, and it checkpoints where it stopped.
  it('stops a real pretraining job in its worker thread at a checkpoint', async () => {
    const home = mkdtempSync(join(tmpdir(), 'teamllm-jobs-'));
    const data = join(home, 'corpus.txt');
    writeFileSync(data, 'The quick brown fox jumps over the lazy dog. '.repeat(200));
    const store = new SqliteStore(join(home, 'teamllm.db'));
    const stages = { pretrain: new URL('../../src/training/stages/pretrain-stage.ts', import.meta.url).href };
    const runner = new JobRunner({ store, home, stages, logger: silentLogger, persistEveryMs: 0 });
    const service = new ChatTrainingService(runner, store, silentLogger, { updateEveryMs: 20 });
    await runner.init();
    await service.start('pretrain', { data, tokenizer: 'char', modelSize: 'tiny', backend: 'wasm', maxIters: '5000', evalInterval: '1000', batchSize: '4' }, ADMIN);
    await waitFor(() => runner.current?.progress?.stage === 'pretrain' && (runner.current.progress.step ?? 0) >= 3, 60_000);
    expect(await service.stop(ADMIN)).toMatch(/Stopped job #1 \(pretrain\): stopped/);
    const job = (await store.getJob(1))!;
    expect(job.status).toBe('stopped');
    expect(job.error).toBe('stopped by an admin');
    // The stage saved where it stopped: at or after the last step the worker reported.
    const reported = job.progress!.step!;
    expect(reported).toBeGreaterThanOrEqual(3);
    const saved = (await latestCheckpoint(job.runDir!))!.step;
    expect(saved).toBeGreaterThanOrEqual(reported);
    expect(saved).toBeLessThan(5000);
  }, 90_000);

  it('marks a job interrupted when its process is killed, and resumes it from the checkpoint after restart', async () => {
    const home = mkdtempSync(join(tmpdir(), 'teamllm-jobs-kill-'));
    const child = spawn(process.execPath, ['--import', 'tsx', new URL('./fixtures/run-job-and-wait.ts', import.meta.url).pathname, home, STAGE], { stdio: 'ignore' });
    const checkpoint = join(home, 'runs', '1-count', 'checkpoint.json');
    const exited = new Promise((r) => child.once('exit', r));
    try {
      await waitFor(() => existsSync(checkpoint) && (JSON.parse(readFileSync(checkpoint, 'utf8')) as { step: number }).step >= 3, 20_000);
    } finally {
      // Killed whatever happens: a failed wait must not leave the child running.
      child.kill('SIGKILL');
      await exited;
    }

    const { store, runner, service } = setup(home);
    expect((await store.getJob(1))!.status).toBe('running');
    expect(await runner.init()).toBe(1);
    expect((await store.getJob(1))!.status).toBe('interrupted');
    const at = (JSON.parse(readFileSync(checkpoint, 'utf8')) as { step: number }).step;
    await store.updateJob(1, { params: { steps: String(at + 2), delayMs: '5' } });
    await service.resume(ADMIN);
    await runner.idle();
    expect((await store.getJob(2))!.result).toMatchObject({ metrics: { start: at, step: at + 2 } });
  });

  it('keeps the bot answering while a job trains, and only admins can start one', async () => {
    const { runner, service, store } = setup();
    await runner.init();
    const { bot } = makeBot({ training: service, store });
    const user = new RecordingTarget();
    await bot.handle(message({ text: '/train count steps=50 delayMs=10' }), user);
    expect(user.last!.text).toMatch(/only admins can run \/train count/);
    const admin = new RecordingTarget();
    await bot.handle(message({ text: '/train count steps=50 delayMs=10', user: { id: 'UADMIN' } }), admin);
    expect(admin.posts[0]!.text).toMatch(/Job #1 count \(steps=50 delayMs=10\)/);
    expect(admin.last!.text).toMatch(/Started job #1/);
    const answered = await bot.handle(message(), new RecordingTarget());
    expect(answered.outcome).toBe('answered');
    expect(runner.current?.id).toBe(1);
    const status = new RecordingTarget();
    await bot.handle(message({ text: '/train status', user: { id: 'UADMIN' } }), status);
    expect(status.last!.text).toMatch(/Job #1 count .* — running/);
    await runner.close();
  });
});

describe('a training job whose disk fills up', () => {
  it('fails with the reason (ENOSPC, which checkpoint) and leaves the previous checkpoint intact', async () => {
    const home = mkdtempSync(join(tmpdir(), 'teamllm-jobs-enospc-'));
    const store = new SqliteStore(join(home, 'teamllm.db'));
    const runner = new JobRunner({ store, home, stages: { full: new URL('./fixtures/disk-full-stage.ts', import.meta.url).href }, logger: silentLogger, persistEveryMs: 0 });
    await runner.init();
    const job = await runner.enqueue('full', {}, 'slack:UADMIN');
    await runner.idle();
    const done = (await store.getJob(job.id))!;
    expect(done.status).toBe('failed');
    expect(done.error).toMatch(/could not write .*checkpoints\/step-00000020: no space left on device \(ENOSPC\); the previous version of it is unchanged/);
    const { latestCheckpoint } = await import('../../src/training/checkpoint.ts');
    expect(await latestCheckpoint(done.runDir!)).toMatchObject({ step: 10 });
    expect(readdirSync(join(done.runDir!, 'checkpoints'))).toEqual(['step-00000010']);
    await runner.close();
    await store.close();
  }, 60_000);
});
