import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import * as tf from '@tensorflow/tfjs-core';
import type { Tensor } from '@tensorflow/tfjs-core';
import { silentLogger } from '../../src/core/index.ts';
import { SqliteStore } from '../../src/core/sqlite-store.ts';
import { initBackend } from '../../src/model/backend.ts';
import { GPT } from '../../src/model/gpt.ts';
import { LoraAdapter } from '../../src/model/lora/adapter.ts';
import { Random } from '../../src/model/random.ts';
import { isHeldOutQuestion, questionKey, rewardData } from '../../src/training/feedback-datasets.ts';
import { JobRunner } from '../../src/training/jobs/job-runner.ts';
import { auc, pairAccuracy, rewardGate } from '../../src/training/reward/metrics.ts';
import { combinedLoss, createHead, encodeRewardInput, HEAD_BIAS, HEAD_WEIGHT, pairLoss, rewardBatch, rewardScores, voteLoss } from '../../src/training/reward/model.ts';
import { currentRewardModel, loadRewardModel, readRewardConfig, rewardDir } from '../../src/training/reward/store.ts';
import { TRAINING_STAGES } from '../../src/training/stages/index.ts';
import { runStage } from '../../src/training/stages/reward-stage.ts';
import { FACTS, simulatedHome, tokenizer } from './helpers.ts';
import { stageServices } from '../../src/training/jobs/stage-services.ts';

const answer = (question: string, output: string) => ({
  platform: 'web' as const,
  workspace: 'w',
  channel: 'c',
  messageId: 'm',
  userId: 'u',
  question,
  passages: [{ source: 'a.md', title: 'A', text: 'Annual leave is 25 days per year.', score: 1 }],
  prompt: '',
  output,
  modelName: 'gpt',
  modelVersion: 'v1',
  latencyMs: 1,
});

const stageContext = (home: string, params: Record<string, string>) => ({
  params,
  home,
  ...stageServices(home),
  runDir: join(home, 'runs', 'r'),
  resume: false,
  signal: new AbortController().signal,
  progress: () => {},
  log: () => {},
});

describe('reward data from the feedback store', () => {
  it('makes votes and liked/disliked pairs per question, and holds out whole questions', async () => {
    const store = new SqliteStore(':memory:');
    const vote = async (q: string, out: string, values: (1 | -1)[]) => {
      const a = await store.saveAnswer(answer(q, out));
      for (const [i, value] of values.entries()) await store.recordFeedback({ answerId: a.id, platform: 'web', userId: `u${i}`, value });
      return a;
    };
    // 30 questions, each answered 3 times (liked, disliked, tied), spelled differently each time.
    for (let i = 0; i < 30; i++) {
      await vote(`How many leave days in year ${i}?`, 'Annual leave is 25 days per year.', [1, 1]);
      await vote(`how many leave days in year ${i}`, 'Ask HR.', [-1]);
      await vote(`HOW MANY LEAVE DAYS IN YEAR ${i}？`, 'Maybe.', [1, -1]); // tie: no label
    }
    const data = await rewardData(store, { heldOutFraction: 0.3, seed: 1 });
    expect(data.stats).toMatchObject({ votes: 60, up: 30, down: 30, pairs: 30, questions: 30 });
    expect(data.train.votes.length + data.heldOut.votes.length).toBe(60);
    expect(data.heldOut.pairs.length).toBe(data.stats.heldOutQuestions);
    expect(data.stats.heldOutQuestions).toBeGreaterThan(3);
    expect(data.stats.heldOutQuestions).toBeLessThan(18);
    // Never split by row: a question's answers and pairs are all on one side.
    const heldKeys = new Set(data.heldOut.votes.map((v) => v.questionKey));
    expect(data.train.votes.some((v) => heldKeys.has(v.questionKey))).toBe(false);
    expect(data.train.pairs.some((p) => heldKeys.has(p.questionKey))).toBe(false);
    for (const p of data.heldOut.pairs) expect(heldKeys.has(p.questionKey)).toBe(true);
    const pair = data.train.pairs[0]!;
    expect(pair.chosen.answer).toBe('Annual leave is 25 days per year.');
    expect(pair.rejected.answer).toBe('Ask HR.');
    expect(pair.chosen.passages).toEqual([{ source: 'a.md', title: 'A', text: 'Annual leave is 25 days per year.' }]);
    // Deterministic: the same split again, and another seed gives another one.
    const again = await rewardData(store, { heldOutFraction: 0.3, seed: 1 });
    expect(again.heldOut.votes.map((v) => v.answerId)).toEqual(data.heldOut.votes.map((v) => v.answerId));
    const keys = Array.from({ length: 400 }, (_, i) => questionKey(`question ${i}?`));
    const share = keys.filter((k) => isHeldOutQuestion(k, 0.25, 7)).length / keys.length;
    expect(share).toBeGreaterThan(0.18);
    expect(share).toBeLessThan(0.32);
    expect(keys.filter((k) => isHeldOutQuestion(k, 0.25, 7) !== isHeldOutQuestion(k, 0.25, 8)).length).toBeGreaterThan(50);
    await store.close();
  });
});

describe('held-out measures', () => {
  it('AUC equals the share of (👍, 👎) pairs ranked right, ties half', () => {
    const rng = new Random(3);
    const scores = Array.from({ length: 60 }, () => Math.round(rng.uniform() * 10));
    const labels = scores.map((s) => rng.uniform() < 0.3 + s / 20);
    let right = 0;
    let all = 0;
    scores.forEach((sp, i) => {
      if (!labels[i]) return;
      scores.forEach((sn, j) => {
        if (labels[j]) return;
        all++;
        right += sp > sn ? 1 : sp === sn ? 0.5 : 0;
      });
    });
    const a = auc(scores, labels);
    expect(a.value).toBeCloseTo(right / all, 10);
    expect(a.lo).toBeLessThan(a.value);
    expect(a.hi).toBeGreaterThan(a.value);
    expect(auc([1, 2, 3, 4], [false, false, true, true]).value).toBe(1);
    expect(auc([1, 2, 3, 4], [true, true, false, false]).value).toBe(0);
    expect(auc([1, 2], [true, true]).value).toBeNaN();
  });

  it('pair accuracy has a Wilson interval, and the gate refuses what chance could explain', () => {
    const acc = pairAccuracy([1, 1, 1, 1, 1, 1, 1, 1, 0, 0], [0, 0, 0, 0, 0, 0, 0, 0, 1, 1]);
    expect(acc.value).toBe(0.8);
    expect(acc.lo).toBeCloseTo(0.4902, 3); // 8/10, 95% Wilson: 0.490–0.943
    expect(acc.hi).toBeCloseTo(0.9433, 3);
    const est = (value: number, n: number) => {
      const right = Math.round(value * n);
      return pairAccuracy(Array.from({ length: n }, (_, i) => (i < right ? 1 : 0)), Array.from({ length: n }, (_, i) => (i < right ? 0 : 1)));
    };
    const noAuc = auc([], []);
    const weak = rewardGate(est(0.58, 50), noAuc);
    expect(weak.passed).toBe(false);
    expect(weak.reasons.join('\n')).toMatch(/pair accuracy 58\.0% .*n=50 pairs\): not distinguishable from chance/);
    const low = rewardGate(est(0.57, 2000), noAuc);
    expect(low.passed).toBe(false);
    expect(low.reasons[0]).toMatch(/below the required 60\.0%/);
    expect(rewardGate(est(0.85, 60), noAuc).passed).toBe(true);
    const none = rewardGate(est(0.9, 4), noAuc);
    expect(none.passed).toBe(false);
    expect(none.reasons.join('\n')).toMatch(/4 held-out pairs \(needs 10\).*too little held-out feedback/s);
    // Both judged: both must pass.
    const goodAuc = auc([0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19], Array.from({ length: 20 }, (_, i) => i >= 10));
    expect(rewardGate(est(0.85, 60), goodAuc).passed).toBe(true);
    expect(rewardGate(est(0.5, 60), goodAuc).passed).toBe(false);
  });
});

describe('scalar head and losses', () => {
  it('Bradley-Terry and logistic losses match their formulas', async () => {
    await initBackend('cpu');
    const c = tf.tensor1d([2, -1, 0.5]);
    const r = tf.tensor1d([1, 1, 0.5]);
    const sig = (x: number) => 1 / (1 + Math.exp(-x));
    const bt = -(Math.log(sig(1)) + Math.log(sig(-2)) + Math.log(sig(0))) / 3;
    expect(pairLoss(c, r).dataSync()[0]).toBeCloseTo(bt, 5);
    const v = voteLoss(tf.tensor1d([3, -40, 40]), [true, false, false]);
    expect(v.dataSync()[0]).toBeCloseTo((-Math.log(sig(3)) - Math.log(sig(40)) + 40) / 3, 4); // stable at ±40
    const both = combinedLoss({ pairs: tf.scalar(1), votes: tf.scalar(4) }, { pairs: 1, votes: 3 });
    expect(both.dataSync()[0]).toBeCloseTo((1 + 12) / 4, 6);
  });

  it('gradients of BT + logistic through the head and LoRA match finite differences', async () => {
    await initBackend('cpu');
    const tok = tokenizer();
    const model = GPT.create({ vocabSize: tok.vocabSize, blockSize: 64, nLayer: 1, nHead: 2, nEmbd: 8, dropout: 0, bias: true }, 11);
    const adapter = LoraAdapter.create(model, { rank: 2, alpha: 4, dropout: 0, targets: 'all' }, { seed: 3 });
    const rng = new Random(5);
    // B starts at zero; give it values so every LoRA tensor has a gradient to check.
    adapter.setParams(new Map([...adapter.params].map(([n, t]) => [n, n.endsWith('lora_B') ? tf.keep(tf.tensor(rng.normalArray(t.size, 0.3), t.shape)) : t])));
    adapter.attach(model);
    const head = createHead(8, 2);
    head.set(HEAD_WEIGHT, tf.keep(tf.tensor2d(rng.normalArray(8, 0.5), [8, 1])));
    head.set(HEAD_BIAS, tf.keep(tf.tensor1d([0.3])));
    const ex = (i: number, a: string) => ({ question: FACTS[i]!.question.slice(0, 12), passages: [{ text: FACTS[i]!.sentence.slice(0, 20) }], answer: a });
    const seqs = [ex(0, 'Requests'), ex(1, 'The budget'), ex(0, 'I am'), ex(1, 'Ask'), ex(2, '3 working days.'), ex(3, 'Please'), ex(4, 'a')].map((e) =>
      encodeRewardInput(tok, e, { maxTokens: 40 }),
    );
    const batch = rewardBatch(seqs, tok.special.end!);
    const labels = [true, false, true];
    const names = [...adapter.paramNames, HEAD_WEIGHT, HEAD_BIAS];
    const loss = (ps: Tensor[]) => {
      const p = new Map([...model.params, ...names.map((n, i) => [n, ps[i]!] as [string, Tensor])]);
      const s = rewardScores(model, batch, p);
      return combinedLoss({ pairs: pairLoss(tf.slice(s, [0], [2]), tf.slice(s, [2], [2])), votes: voteLoss(tf.slice(s, [4], [3]), labels) }, { pairs: 1, votes: 0.5 }) as tf.Scalar;
    };
    const values = names.map((n) => (n === HEAD_WEIGHT || n === HEAD_BIAS ? head.get(n)! : adapter.params.get(n)!));
    const { grads } = tf.valueAndGrads((...ps: Tensor[]) => loss(ps))(values);
    const h = 1e-2;
    for (let i = 0; i < names.length; i++) {
      const d = tf.tensor(rng.normalArray(values[i]!.size, 1), values[i]!.shape);
      const analytic = tf.sum(tf.mul(grads[i]!, d)).dataSync()[0]!;
      const at = (step: number) => tf.tidy(() => loss(values.map((v, j) => (j === i ? tf.add(v, tf.mul(d, step)) : v))).dataSync()[0]!);
      // Central differences at h and h/2, Richardson-combined so the h² error term cancels.
      const central = (step: number) => (at(step) - at(-step)) / (2 * step);
      const numeric = (4 * central(h / 2) - central(h)) / 3;
      const err = Math.abs(analytic - numeric) / Math.max(1e-3, Math.abs(analytic) + Math.abs(numeric));
      expect(err, `${names[i]}: analytic ${analytic} numeric ${numeric}`).toBeLessThan(1e-2);
      expect(Math.abs(analytic), names[i]).toBeGreaterThan(1e-5);
    }
    // The pair loss does not depend on the bias: its gradient there is exactly zero.
    const pairOnly = tf.grad((b: Tensor) => {
      const p = new Map([...model.params, ...head, [HEAD_BIAS, b] as [string, Tensor]]);
      const s = rewardScores(model, batch, p);
      return pairLoss(tf.slice(s, [0], [2]), tf.slice(s, [2], [2]));
    })(head.get(HEAD_BIAS)!);
    expect(Math.abs(pairOnly.dataSync()[0]!)).toBeLessThan(1e-6);
    // Right padding does not change a score: alone or batched with longer sequences, the same.
    const p = new Map([...model.params, ...head]);
    const batched = rewardScores(model, batch, p).dataSync();
    for (const i of [0, 6]) {
      const alone = rewardBatch([seqs[i]!], tok.special.end!);
      expect(rewardScores(model, alone, p).dataSync()[0]).toBeCloseTo(batched[i]!, 5);
    }
    model.dispose();
  });

  it('encodes question, passages and answer in the chat template, keeping the quoted line when the context must be cut', () => {
    const tok = tokenizer();
    const long = FACTS.slice(0, 12).map((f) => f.sentence).join('\n');
    const quoted = FACTS[9]!.sentence;
    const ids = encodeRewardInput(tok, { question: FACTS[9]!.question, passages: [{ text: long }], answer: `According to the handbook: ${quoted}` }, { maxTokens: 128 + 180 });
    expect(ids.length).toBeLessThanOrEqual(308);
    expect(ids.at(-1)).toBe(tok.special.end);
    expect(ids[0]).toBe(tok.special.context);
    const specials = new Set(Object.values(tok.special));
    const text = tok.decode(ids.filter((t) => !specials.has(t)));
    expect(text).toContain(quoted);
    expect(text.length).toBeLessThan(long.length + 200);
    // Too long for the block: the answer keeps at least half of it, the context what is left.
    const tight = encodeRewardInput(tok, { question: FACTS[9]!.question, passages: [{ text: long }], answer: `Handbook: ${quoted} ${long}` }, { maxTokens: 200 });
    expect(tight.length).toBeLessThanOrEqual(200);
    expect(tight.length - tight.indexOf(tok.special.assistant!) - 2).toBe(100);
    expect(tight[0]).toBe(tok.special.context);
    expect(tok.decode(tight.slice(0, tight.indexOf(tok.special.user!)).filter((t) => !specials.has(t)))).toContain(quoted);
    // A very long answer is cut so that the closing <|end|> (the token the head reads) stays.
    const cut = encodeRewardInput(tok, { question: 'q?', passages: [], answer: 'a'.repeat(500) }, { maxTokens: 64 });
    expect(cut).toHaveLength(64);
    expect(cut.at(-1)).toBe(tok.special.end);
  });
});

describe('train reward stage', () => {
  // The default backend (native when built, else wasm): the tests above switched to cpu.
  beforeAll(async () => {
    await initBackend();
  });

  it('says how much feedback it needs and how much there is', async () => {
    const { home, store } = await simulatedHome({ perQuestion: 1 });
    await expect(runStage(stageContext(home, {}))).rejects.toThrow(
      /too little feedback to train a reward model: 40 answers with a net vote \(\d+ 👍, \d+ 👎\) on 40 questions, 0 liked\/disliked pairs\. It needs at least 100 rated answers, 20 of them 👍 and 20 👎/,
    );
    await expect(runStage(stageContext(home, { heldOut: '2' }))).rejects.toThrow(/heldOut: must be between 0 and 1/);
    await expect(runStage(stageContext(home, { epoch: '2' }))).rejects.toThrow(/unknown parameter epoch/);
    await store.close();
  });

  it('reports a reward model no better than chance and does not use it', async () => {
    // Users who vote at random (noise 0.5): there is nothing to learn.
    const { home, store } = await simulatedHome({ perQuestion: 4, noise: 0.5, seed: 9 });
    const result = await runStage(stageContext(home, { maxIters: '2', batchSize: '2', name: 'coin', evalInterval: '2' }));
    expect(result.gate?.passed).toBe(false);
    expect(result.summary).toMatch(/Reward model "coin" is not used: it is no better than chance on held-out questions \(.*not distinguishable from chance/);
    expect(await currentRewardModel(home)).toBeUndefined();
    expect((await readRewardConfig(rewardDir(home, 'coin'))).gate.passed).toBe(false);
    await expect(loadRewardModel(home)).rejects.toThrow(/none of "coin" passed its held-out check/);
    await expect(loadRewardModel(home, 'coin')).rejects.toThrow(/did not pass its held-out check and is not used/);
    await store.close();
  });

  it('runs as a training job (the /train reward and teamllm train reward path)', async () => {
    const home = mkdtempSync(join(tmpdir(), 'teamllm-reward-job-'));
    const store = new SqliteStore(join(home, 'teamllm.db'));
    const runner = new JobRunner({ store, home, stages: TRAINING_STAGES, logger: silentLogger, persistEveryMs: 0 });
    await runner.init();
    expect(runner.kinds).toContain('reward');
    const job = await runner.enqueue('reward', {}, 'slack:UADMIN');
    await runner.idle();
    expect(await store.getJob(job.id)).toMatchObject({ status: 'failed', error: expect.stringMatching(/too little feedback .*: 0 answers with a net vote/) });
    await store.close();
  }, 30_000);
});
