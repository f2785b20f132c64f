/**
 * PPO, DPO and KTO checkpoints: a run stopped at step N and resumed from its run folder ends with exactly
 * the same LoRA weights (and the same per-step losses) as an uninterrupted run of the same seed; a
 * checkpoint made with other settings is refused with a clear error.
 */
import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { useBackend } from '../model/helpers.ts';
import { LoraAdapter } from '../../src/model/lora/adapter.ts';
import { latestCheckpoint } from '../../src/training/checkpoint.ts';
import { rlhfData } from '../../src/training/rlhf/data.ts';
import { trainOffline, type OfflineOptions, type OfflineResult } from '../../src/training/rlhf/offline.ts';
import { ModelRegistry } from '../../src/model/registry.ts';
import { trainPpo, type PpoOptions, type PpoResult } from '../../src/training/rlhf/ppo.ts';
import { tasteReward } from '../../src/training/rlhf/taste-reward.ts';
import { QUOTES_SOURCE } from '../../src/training/simulated-users.ts';
import { runRlhfJob } from '../../src/training/rlhf/pipeline.ts';
import { ratedStore, toySetup, TOY_FIXTURE } from './helpers.ts';
import { stageServices } from '../../src/training/jobs/stage-services.ts';

await useBackend('wasm');
const setup = await toySetup();
const { model, tokenizer, layout } = setup;
const { store, dir } = await ratedStore(setup, 6);
const data = await rlhfData(store, { heldOutFraction: 0 });
afterAll(async () => {
  await store.close();
  await fs.rm(dir, { recursive: true, force: true });
});

const STEPS = 9;
const weights = (r: OfflineResult) => Object.fromEntries(r.adapter.paramNames.map((n) => [n, Array.from(r.adapter.params.get(n)!.dataSync())]));

describe.each(['dpo', 'kto'] as const)('%s checkpoints', (algo) => {
  const run = async (extra: Partial<OfflineOptions>) => {
    const r = await trainOffline({
      model, tokenizer, layout, algo, pairs: data.train.pairs, votes: data.train.votes,
      steps: STEPS, batchSize: 4, learningRate: 1e-3, beta: 0.5, lora: { rank: 2, alpha: 4 }, seed: 3, checkpointInterval: 4, ...extra,
    });
    LoraAdapter.detach(model);
    return r;
  };

  it('a run stopped at step N and resumed ends with the same weights as an uninterrupted one', async () => {
    if (algo === 'dpo') expect(data.train.pairs.length).toBeGreaterThan(4);
    const full = await run({});
    expect(full.status).toBe('completed');
    expect(full.checkpointStep).toBeUndefined(); // no runDir: no checkpoints

    const runDir = await fs.mkdtemp(path.join(os.tmpdir(), `teamllm-rlhf-resume-${algo}-`));
    try {
      const ac = new AbortController();
      const first = await run({ runDir, signal: ac.signal, onStep: (s) => void (s.step === 6 && ac.abort()) });
      expect(first.status).toBe('aborted');
      expect(first.history.length).toBe(6);
      expect(first.checkpointStep).toBe(6); // the interval checkpoint at 4, then the stop's at 6
      expect((await latestCheckpoint(runDir))?.step).toBe(6);
      expect(await fs.readdir(path.join(runDir, 'checkpoints'))).toEqual(['step-00000006']); // only the newest kept
      // The stopped run's weights differ from the finished ones (so the comparison below can fail).
      expect(weights(first)).not.toEqual(weights(full));
      first.adapter.dispose();

      const seen: number[] = [];
      const second = await run({ runDir, onStep: (s) => void seen.push(s.step) });
      expect(second.status).toBe('completed');
      expect(second.resumedFrom).toBe(6);
      expect(seen).toEqual([7, 8, 9]);
      expect(second.history.map((h) => h.loss)).toEqual(full.history.map((h) => h.loss));
      expect(weights(second)).toEqual(weights(full));
      second.adapter.dispose();

      // Other settings: refused, naming them.
      await expect(run({ runDir, learningRate: 2e-3 })).rejects.toThrow(/other settings \(learningRate\).*new run folder/);
    } finally {
      full.adapter.dispose();
      await fs.rm(runDir, { recursive: true, force: true });
    }
  }, 60_000);
});

describe('the rlhf job', () => {
  it('stopped mid-run names its checkpoint; resumed, it continues from it with the cached before-measure and curves', async () => {
    const home = await fs.mkdtemp(path.join(os.tmpdir(), 'teamllm-rlhf-resume-home-'));
    try {
      await (await ratedStore(setup, 6, path.join(home, 'teamllm.db'))).store.close();
      await new ModelRegistry(home).register(TOY_FIXTURE, { source: 'sft', promote: true });
      const runDir = path.join(home, 'runs', '1-rlhf');
      const params = { algo: 'kto' as const, steps: 6, checkpointInterval: 2, evalInterval: 3, skipQa: true, evalSamples: 1, maxTokens: 40, beta: 0.5, seed: 3 };
      const stop = new AbortController();
      await expect(
        runRlhfJob(params, { home, ...stageServices(home), runDir, signal: stop.signal, progress: (ev) => void (ev.stage === 'rlhf' && ev.step === 5 && stop.abort()) }),
      ).rejects.toThrow(/stopped at step 5: checkpoint saved at step 5; \/train resume continues from it/);
      const beforeJson = JSON.parse(await fs.readFile(path.join(runDir, 'before.json'), 'utf8')) as { reward: number };
      const lines: string[] = [];
      const r = await runRlhfJob(params, { home, ...stageServices(home), runDir, log: (l) => lines.push(l) });
      expect(r.status).toBe('completed');
      expect(r.steps).toBe(6);
      expect(lines.some((l) => /resuming from the checkpoint at step 5/.test(l))).toBe(true);
      expect(lines.some((l) => /^before \(step 0\)/.test(l))).toBe(false); // not measured again
      expect(r.before.reward).toBe(beforeJson.reward);
      const metrics = (await fs.readFile(r.files.metrics, 'utf8')).trim().split('\n').map((l) => JSON.parse(l) as Record<string, number>);
      expect(metrics.filter((m) => 'loss' in m).map((m) => m.step)).toEqual([1, 2, 3, 4, 5, 6]);
      expect(metrics.filter((m) => 'eval_kl' in m).map((m) => m.step)).toEqual([3]);
      expect(r.modelVersion).toBe('v2');
    } finally {
      await fs.rm(home, { recursive: true, force: true });
    }
  }, 60_000);
});

describe('ppo checkpoints', () => {
  it('a run stopped at iteration N and resumed ends with the same LoRA, value head and β as an uninterrupted one', async () => {
    const reward = tasteReward(QUOTES_SOURCE);
    const run = async (extra: Partial<PpoOptions>) => {
      const r = await trainPpo({
        model, tokenizer, layout, prompts: setup.questions.filter((q) => q.split === 'train'), reward,
        steps: 4, promptsPerStep: 2, samplesPerPrompt: 2, ppoEpochs: 2, learningRate: 5e-3, initKlCoef: 0.2, targetKl: 0.01, klHorizon: 10,
        lora: { rank: 2, alpha: 4 }, seed: 5, checkpointInterval: 2, ...extra,
      });
      LoraAdapter.detach(model);
      return r;
    };
    const all = (r: PpoResult) => ({ ...weights(r as unknown as OfflineResult), w: Array.from(r.valueHead.w.dataSync()), b: Array.from(r.valueHead.b.dataSync()) });
    const full = await run({});
    const runDir = await fs.mkdtemp(path.join(os.tmpdir(), 'teamllm-rlhf-resume-ppo-'));
    try {
      const ac = new AbortController();
      const first = await run({ runDir, signal: ac.signal, onStep: (s) => void (s.step === 3 && ac.abort()) });
      expect(first.status).toBe('aborted');
      expect(first.checkpointStep).toBe(3);
      expect(all(first)).not.toEqual(all(full));
      first.adapter.dispose();
      first.valueHead.dispose();
      const second = await run({ runDir });
      expect(second.resumedFrom).toBe(3);
      expect(second.history.map((h) => [h.reward, h.klCoef, h.nextKlCoef, h.policyLoss])).toEqual(full.history.map((h) => [h.reward, h.klCoef, h.nextKlCoef, h.policyLoss]));
      expect(new Set(full.history.map((h) => h.klCoef)).size).toBeGreaterThan(1); // β adapted, so restoring it matters
      expect(all(second)).toEqual(all(full));
      second.adapter.dispose();
      second.valueHead.dispose();
      await expect(run({ runDir, ppoEpochs: 3 })).rejects.toThrow(/other settings \(epochs\)/);
    } finally {
      full.adapter.dispose();
      full.valueHead.dispose();
      await fs.rm(runDir, { recursive: true, force: true });
    }
  }, 60_000);
});
