import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { tf, useBackend } from '../model/helpers.ts';
import { LoraAdapter } from '../../src/model/lora/adapter.ts';
import { Random } from '../../src/model/random.ts';
import { answerLogProbs, collateEpisodes, sampleAnswers, sequenceLogProbs, stopIdsFor, withoutAdapter, type Episode } from '../../src/training/rlhf/policy.ts';
import { encodePrompt } from '../../src/training/rlhf/episodes.ts';
import { dpoLoss } from '../../src/training/rlhf/losses.ts';
import { trainPpo } from '../../src/training/rlhf/ppo.ts';
import { tasteReward } from '../../src/training/rlhf/taste-reward.ts';
import { loadOrTrainToyPolicy, toyQuestions, TOY_MAX_ANSWER_TOKENS } from '../../src/training/rlhf/toy-world.ts';
import { QUOTES_SOURCE } from '../../src/training/simulated-users.ts';

await useBackend('wasm');
const FIXTURE = path.join(import.meta.dirname, 'fixtures', 'toy-sft');
const { model, tokenizer } = await loadOrTrainToyPolicy(FIXTURE);
const questions = toyQuestions();
const layout = { blockSize: model.config.blockSize, maxTokens: TOY_MAX_ANSWER_TOKENS };
const stopIds = stopIdsFor(tokenizer, model.config.vocabSize);
const pad = tokenizer.special.end!;

/** An adapter whose B is not zero, so the policy differs from the reference. */
function perturbedAdapter(seed: number): LoraAdapter {
  const a = LoraAdapter.create(model, { rank: 2, alpha: 4, dropout: 0 }, { seed });
  const rng = new Random(seed);
  a.setParams(new Map([...a.params].map(([n, p]) => [n, n.endsWith('lora_B') ? tf.keep(tf.tensor(rng.normalArray(p.size, 0.3), p.shape)) : p])));
  return a;
}

describe('policy log-probabilities', () => {
  it('teacher forcing gives the log-probs recorded while sampling with the KV cache (with and without LoRA)', () => {
    const prompt = encodePrompt(tokenizer, questions[0]!, layout);
    const adapter = perturbedAdapter(3);
    for (const attached of [false, true]) {
      if (attached) adapter.attach(model);
      const sampled = sampleAnswers(model, prompt, 3, { maxTokens: 24, stopIds, rng: new Random(7) });
      const episodes: Episode[] = sampled.map((s) => ({ prompt, answer: s.tokens }));
      const { logp } = answerLogProbs(model, episodes, pad);
      sampled.forEach((s, i) => {
        expect(s.tokens.length).toBeGreaterThan(0);
        s.logprobs.forEach((l, t) => expect(logp[i]![t]).toBeCloseTo(l, 4));
        const batch = collateEpisodes([episodes[i]!], pad);
        const seq = tf.tidy(() => sequenceLogProbs(model, batch)).dataSync()[0]!;
        expect(seq).toBeCloseTo(s.logprobs.reduce((a, b) => a + b, 0), 3);
        batch.x.dispose();
      });
      LoraAdapter.detach(model);
    }
    adapter.dispose();
  });

  it('the reference is the same model without the adapter', () => {
    const prompt = encodePrompt(tokenizer, questions[1]!, layout);
    const episodes: Episode[] = [{ prompt, answer: [...tokenizer.encode('Please check with HR.'), pad] }];
    const plain = answerLogProbs(model, episodes, pad).logp[0]!;
    const adapter = perturbedAdapter(5);
    adapter.attach(model);
    const withLora = answerLogProbs(model, episodes, pad).logp[0]!;
    const ref = withoutAdapter(model, () => answerLogProbs(model, episodes, pad).logp[0]!);
    expect(model.projectionHook).toBeDefined(); // restored
    LoraAdapter.detach(model);
    adapter.dispose();
    ref.forEach((v, t) => expect(v).toBeCloseTo(plain[t]!, 5));
    expect(Math.max(...withLora.map((v, t) => Math.abs(v - plain[t]!)))).toBeGreaterThan(1e-3);
  });

  it('DPO gradients through the model and LoRA match finite differences', () => {
    const q = questions[2]!;
    const prompt = encodePrompt(tokenizer, q, layout);
    const chosen: Episode = { prompt, answer: [...tokenizer.encode(q.quote), pad] };
    const rejected: Episode = { prompt, answer: [...tokenizer.encode('Please check with HR.'), pad] };
    const batch = collateEpisodes([chosen, rejected], pad);
    const ref = withoutAdapter(model, () => tf.tidy(() => sequenceLogProbs(model, batch)).dataSync());
    const rc = tf.tensor1d([ref[0]!]);
    const rr = tf.tensor1d([ref[1]!]);
    const adapter = perturbedAdapter(9);
    adapter.attach(model);
    const names = adapter.paramNames;
    const loss = (ps: tf.Tensor[]) => {
      const p = new Map(model.params);
      names.forEach((n, i) => p.set(n, ps[i]!));
      const lp = sequenceLogProbs(model, batch, p);
      const [c, r] = tf.split(lp, 2);
      return dpoLoss(c!, r!, rc, rr, 0.5);
    };
    const grads = tf.grads((...ps: tf.Tensor[]) => loss(ps))(adapter.paramList());
    // The three largest gradient entries of the first A and the first B, checked by central differences.
    for (const which of [0, 1]) {
      const g = grads[which]!.dataSync();
      const idx = Array.from(g.keys()).sort((a, b) => Math.abs(g[b]!) - Math.abs(g[a]!)).slice(0, 3);
      for (const i of idx) {
        const h = 1e-2;
        const at = (delta: number) => {
          const ps = adapter.paramList().map((p, k) => {
            if (k !== which) return p;
            const d = Float32Array.from(p.dataSync());
            d[i] = d[i]! + delta;
            return tf.tensor(d, p.shape);
          });
          return tf.tidy(() => loss(ps)).dataSync()[0]!;
        };
        const fd = (at(h) - at(-h)) / (2 * h);
        expect(Math.abs(fd - g[i]!)).toBeLessThan(0.03 * Math.abs(g[i]!) + 1e-4);
      }
    }
    LoraAdapter.detach(model);
    adapter.dispose();
    [rc, rr, batch.x, ...grads].forEach((x) => x.dispose());
  });
});

describe('PPO at the first step', () => {
  it('starts with ratio 1 and KL 0 (LoRA B = 0: policy = reference), then moves', async () => {
    const train = questions.filter((q) => q.split === 'train');
    const r = await trainPpo({ model, tokenizer, prompts: train, reward: tasteReward(QUOTES_SOURCE), layout, steps: 2, promptsPerStep: 2, samplesPerPrompt: 3, ppoEpochs: 2, learningRate: 5e-3, lora: { rank: 2, alpha: 4 }, seed: 4 });
    LoraAdapter.detach(model);
    const [first, second] = r.history;
    expect(first!.firstRatio).toBe(1);
    expect(first!.kl).toBe(0);
    expect(first!.approxKl).toBeGreaterThanOrEqual(0);
    expect(first!.klCoef).toBeCloseTo(0.2, 12); // the default initial β
    // B moved away from zero during the first iteration: the second one samples from a different policy.
    const bNorm = r.adapter.paramNames.filter((n) => n.endsWith('lora_B')).reduce((s, n) => s + tf.sum(tf.square(r.adapter.params.get(n)!)).dataSync()[0]!, 0);
    expect(bNorm).toBeGreaterThan(0);
    expect(second!.kl).not.toBe(0);
    for (const s of r.history) for (const v of [s.reward, s.entropy, s.policyLoss, s.valueLoss]) expect(Number.isFinite(v)).toBe(true);
    r.adapter.dispose();
    r.valueHead.dispose();
  });
});
