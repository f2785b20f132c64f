import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { readSafetensors } from '../../src/model/safetensors.ts';
import { rewardData } from '../../src/training/feedback-datasets.ts';
import { trainRewardModel, type RewardTrainOptions } from '../../src/training/reward/train.ts';
import { runStage } from '../../src/training/stages/reward-stage.ts';
import { simulatedHome } from './helpers.ts';
import { stageServices } from '../../src/training/jobs/stage-services.ts';

/**
 * A reward model run stopped mid-way leaves a checkpoint (adapter + head, AdamW moments and step,
 * data order, curves), and the resumed run ends bit-for-bit where an uninterrupted run of the same
 * seed ends: same adapter and head weights, same train loss and held-out measures.
 */
describe('reward model checkpoints', () => {
  it('a run stopped at step 7 and resumed ends with the same weights as an uninterrupted run', async () => {
    const { home, store } = await simulatedHome({ perQuestion: 4 });
    const data = await rewardData(store, { heldOutFraction: 0.2, seed: 0 });
    store.close();
    const opts = (dir: string): RewardTrainOptions => ({
      runDir: join(home, dir),
      outDir: join(home, dir, 'out'),
      name: 'rm',
      base: join(home, 'base-model'),
      lora: { rank: 4, alpha: 8, dropout: 0, targets: ['q', 'v'] },
      maxIters: 12,
      batchSize: 4,
      learningRate: 0.005,
      warmupIters: 2,
      weightDecay: 0.01,
      evalInterval: 4,
      checkpointInterval: 5,
      seed: 3,
    });

    const whole = await trainRewardModel(opts('whole'), data);
    expect(whole.status).toBe('completed');
    expect(whole.resumedFrom).toBeUndefined();

    const stop = new AbortController();
    const logs: string[] = [];
    const stopped = await trainRewardModel(opts('split'), data, {
      signal: stop.signal,
      log: (l) => logs.push(l),
      onProgress: (ev) => {
        if (ev.phase === 'train' && ev.step === 7) stop.abort();
      },
    });
    expect(stopped).toMatchObject({ status: 'aborted', steps: 7, checkpointStep: 7 });
    expect(stopped.dir).toBeUndefined();
    // The checkpoint at the stop is there; the one at step 5 was replaced by it.
    const ckRoot = join(home, 'split', 'checkpoints');
    expect(readdirSync(ckRoot)).toEqual(['step-00000007']);
    const ck = join(ckRoot, 'step-00000007');
    for (const f of ['trainables.safetensors', 'optimizer.safetensors', 'state.json']) expect(existsSync(join(ck, f))).toBe(true);
    const opt = await readSafetensors(join(ck, 'optimizer.safetensors'));
    expect(opt.metadata.step).toBe('7');
    expect(JSON.parse(readFileSync(join(ck, 'state.json'), 'utf8')).history.train).toHaveLength(7);
    const atStop = await readSafetensors(join(ck, 'trainables.safetensors'));

    // Other settings in the same run folder: refused, the checkpoint is kept.
    await expect(trainRewardModel({ ...opts('split'), seed: 4 }, data)).rejects.toThrow(/made with other settings \(seed\)/);
    expect(existsSync(ck)).toBe(true);

    const resumed = await trainRewardModel(opts('split'), data, { log: (l) => logs.push(l) });
    expect(resumed).toMatchObject({ status: 'completed', resumedFrom: 7, steps: 12 });
    expect(logs.join('\n')).toMatch(/resuming from the checkpoint at step 7 of 12/);

    // Same weights, bit for bit.
    for (const file of ['adapter.safetensors', 'head.safetensors']) {
      const a = await readSafetensors(join(whole.dir!, file));
      const b = await readSafetensors(join(resumed.dir!, file));
      expect([...b.tensors.keys()].sort()).toEqual([...a.tensors.keys()].sort());
      expect(a.tensors.size).toBeGreaterThan(0);
      for (const [name, t] of a.tensors) expect(Array.from(b.tensors.get(name)!.data), `${file} ${name}`).toEqual(Array.from(t.data));
    }
    // The steps after the stop changed the weights (the comparison is not vacuous).
    const head = await readSafetensors(join(resumed.dir!, 'head.safetensors'));
    const [headName, headAtEnd] = [...head.tensors][0]!;
    expect(Array.from(headAtEnd.data)).not.toEqual(Array.from(atStop.tensors.get(headName)!.data));
    expect(resumed.trainLoss).toBe(whole.trainLoss);
    expect(resumed.after.accuracy.value).toBeCloseTo(whole.after.accuracy.value, 6);
    expect(resumed.after.auc.value).toBeCloseTo(whole.after.auc.value, 6);
    expect(resumed.after.pairLoss).toBeCloseTo(whole.after.pairLoss, 6);
    expect(resumed.before).toEqual(whole.before);

    // The resumed run's metrics.jsonl reads as one run: 12 training lines, evaluations at 0, 4, 8, 12.
    const lines = (dir: string) => readFileSync(join(home, dir, 'metrics.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l) as Record<string, number>);
    const split = lines('split');
    expect(split.filter((l) => l.loss !== undefined).map((l) => l.step)).toEqual([...Array(12).keys()].map((i) => i + 1));
    expect(split.filter((l) => l.heldout_auc !== undefined).map((l) => l.step)).toEqual([0, 4, 8, 12]);
    expect(split.map((l) => l.loss).filter((x) => x !== undefined)).toEqual(lines('whole').map((l) => l.loss).filter((x) => x !== undefined));
  }, 20_000);

  it('the stopped job says where it saved and that /train resume continues', async () => {
    const { home, store } = await simulatedHome({ perQuestion: 4 });
    store.close();
    const stop = new AbortController();
    const result = await runStage({
      params: { maxIters: '6', batchSize: '2', rank: '2', targets: 'q', checkpointInterval: '100', name: 'rm' },
      home,
      ...stageServices(home),
      runDir: join(home, 'runs', '3-reward'),
      resume: false,
      signal: stop.signal,
      progress: (p) => {
        if (p.stage === 'reward' && p.step === 3) stop.abort();
      },
      log: () => {},
    });
    expect(result.summary).toBe('Reward model training stopped at step 3; checkpoint saved at step 3: /train resume continues from it.');
    expect(existsSync(join(home, 'runs', '3-reward', 'checkpoints', 'step-00000003', 'state.json'))).toBe(true);
  }, 20_000);
});
