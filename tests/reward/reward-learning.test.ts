import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import type { JobProgress } from '../../src/core/index.ts';
import { saveModelFiles } from '../../src/model/model-files.ts';
import { rewardData } from '../../src/training/feedback-datasets.ts';
import { pairAccuracy, auc } from '../../src/training/reward/metrics.ts';
import { currentRewardModel, loadRewardModel, readRewardConfig, rewardDir } from '../../src/training/reward/store.ts';
import { runStage } from '../../src/training/stages/reward-stage.ts';
import { QUOTES_SOURCE } from '../../src/training/simulated-users.ts';
import { simulatedHome, tinyBase } from './helpers.ts';
import { stageServices } from '../../src/training/jobs/stage-services.ts';

/**
 * The proof that the reward model learns what users like: simulated users who like answers that
 * quote a retrieved passage (5% noise) rate 320 answers to 40 questions; a tiny model (random
 * frozen base, 2 layers × 32, character tokens, LoRA + head) is trained through the job stage in
 * 150 steps (~15 s of CPU) and must rank the answers to the held-out questions (never seen in
 * training) well above chance.
 *
 * The answers are those a small RAG bot gives (a quote of the passage with or without a
 * "Handbook:" lead-in, a bare short answer, a hedge, a quote of a document that was not
 * retrieved) over a compact world of five- and six-word policy sentences, so that passage,
 * question and answer fit the 128-token block together: realistic, and learnable by a tiny
 * character model in seconds. A quote of the wrong document has the same style as a right one,
 * so style alone does not reach the accuracy asked for; reading the passage reliably takes a
 * tiny model longer (see docs/feedback-loop.md for the measured runs).
 */
describe('reward model on simulated feedback', () => {
  it('learns the simulated users\u2019 taste on held-out questions, saves, loads and refuses another base', async () => {
    const { home, store, version } = await simulatedHome();
    const events: JobProgress[] = [];
    const logs: string[] = [];
    const runDir = join(home, 'runs', 'reward-1');
    const result = await runStage({
      params: { maxIters: '150', batchSize: '4', learningRate: '0.005', targets: 'all', evalInterval: '75', name: 'rm' },
      home,
      ...stageServices(home),
      runDir,
      resume: false,
      signal: new AbortController().signal,
      progress: (p) => events.push(p),
      log: (l) => logs.push(l),
    });
    const m = result.metrics!;
    // Well above chance on questions it never saw, and the gate agrees.
    expect(m.heldOutPairs).toBeGreaterThanOrEqual(50);
    expect(m.pairAccuracy).toBeGreaterThan(0.7);
    expect(m.pairAccuracyLo).toBeGreaterThan(0.6);
    expect(m.voteAuc).toBeGreaterThan(0.7);
    expect(m.basePairAccuracy).toBeLessThan(0.65); // the untrained head: chance
    expect(result.gate).toMatchObject({ passed: true });
    expect(result.summary).toMatch(/Reward model "rm" is now the one RLHF uses: held-out pair accuracy/);
    expect(await currentRewardModel(home)).toBe('rm');
    // Progress with loss and ETA, held-out measures in the messages, a drawn chart, metrics.
    expect(events.some((e) => e.stage === 'reward' && e.step === 150 && e.totalSteps === 150 && Number.isFinite(e.loss) && e.etaSec !== undefined)).toBe(true);
    expect(events.some((e) => e.stage === 'evaluate' && /held-out pair accuracy \d/.test(e.message ?? ''))).toBe(true);
    expect(logs.join('\n')).toMatch(/held out \d+ questions/);
    expect(readFileSync(result.files!.lossChart!).subarray(1, 4).toString()).toBe('PNG');
    const lines = readFileSync(join(runDir, 'metrics.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l) as Record<string, number>);
    expect(lines.filter((l) => l.loss !== undefined)).toHaveLength(150);
    expect(lines.filter((l) => l.heldout_accuracy !== undefined).map((l) => l.step)).toEqual([0, 75, 150]);
    // The folder: adapter, head, config with the base's identity.
    const dir = rewardDir(home, 'rm');
    for (const f of ['adapter.safetensors', 'adapter_config.json', 'head.safetensors', 'reward_config.json']) expect(existsSync(join(dir, f))).toBe(true);
    const config = await readRewardConfig(dir);
    expect(config.base.version).toBe(version);
    expect(config.base.fingerprint).toMatch(/^[0-9a-f]{64}$/);

    // Loaded through the contract (adapter merged), it ranks the held-out pairs as measured.
    const data = await rewardData(store, { heldOutFraction: 0.2 });
    const rm = await loadRewardModel(home);
    expect(rm.info).toMatchObject({ name: 'rm', baseVersion: version });
    expect(rm.info.metrics.pairAccuracy).toBeCloseTo(m.pairAccuracy!, 6);
    const pairs = data.heldOut.pairs;
    const chosen = await rm.score(pairs.map((p) => p.chosen));
    const rejected = await rm.score(pairs.map((p) => p.rejected));
    expect(Math.abs(pairAccuracy(chosen, rejected).value - m.pairAccuracy!)).toBeLessThan(0.02);
    // Against the taste itself (no noise): held-out answers the taste likes score higher.
    const votes = data.heldOut.votes;
    const scores = await rm.score(votes);
    expect(auc(scores, votes.map((v) => QUOTES_SOURCE.likes(v))).value).toBeGreaterThan(0.7);
    rm.dispose();
    await expect(rm.score(votes.slice(0, 1))).rejects.toThrow(/disposed/);

    // Another base (same shape, other weights) is refused with a message that says so.
    const other = tinyBase(99); // backend already initialised above
    await saveModelFiles(join(home, 'other-model'), other.gpt, other.tok);
    other.gpt.dispose();
    await expect(loadRewardModel(home, 'rm', { baseDir: join(home, 'other-model') })).rejects.toThrow(/cannot be used on .*other-model.*trained on base model v1 .*same shape, different weights/s);
    await store.close();
  }, 120_000);
});
