/**
 * `node --expose-gc --import tsx bench/rlhf-memory.ts <frozen|float32> [--shape qwen2.5-0.5b] [--tokens 64] [--reward same|own]`
 *
 * Peak RSS of the RLHF job's model memory on an imported base (random bf16 weights of a real
 * shape): the engine as loaded, the policy built from it as job-inputs.ts builds it (frozen: the
 * engine's matrices; float32: the widened copy the job held before), a LoRA r=16 on all seven
 * projections, the reference log-probs of 2 pairs and one DPO step; then a reward model on the
 * same base as store.ts loads it (frozen with the adapter hooked, reading the policy's engine with
 * --reward same, else an engine of its own; float32: its own engine and float32 copy, the adapter
 * merged, as the job did before) scoring the 4 answers, as PPO holds it beside the policy. One
 * mode a process (its peak RSS its own). Prints key=value.
 */
import { parseArgs } from 'node:util';
import * as tf from '@tensorflow/tfjs-core';
import { initBackend } from '../src/model/backend.ts';
import { llamaConfigFromHf } from '../src/model/import/llama-config.ts';
import { LlamaModel } from '../src/model/import/llama.ts';
import { LoraAdapter } from '../src/model/lora/adapter.ts';
import { trainableFromChatModel } from '../src/model/lora/imported-base.ts';
import { collateEpisodes, sequenceLogProbs } from '../src/training/rlhf/policy.ts';
import { dpoBatchLoss } from '../src/training/rlhf/offline.ts';
import { SHAPES, randomWeights } from './open-model.ts';

const { positionals, values } = parseArgs({ allowPositionals: true, options: { shape: { type: 'string', default: 'qwen2.5-0.5b' }, tokens: { type: 'string', default: '64' }, reward: { type: 'string', default: 'same' } } });
const mode = positionals[0];
if (mode !== 'frozen' && mode !== 'float32') throw new Error('usage: rlhf-memory.ts frozen|float32');
const frozen = mode === 'frozen';
await initBackend('native', { log: () => {} });
const config = llamaConfigFromHf(SHAPES[values.shape!]!);
const T = Number(values.tokens);
const mib = (b: number) => Math.round(b / 2 ** 20);
const gc = (globalThis as { gc?: () => void }).gc;
const rss = () => (gc?.(), mib(process.memoryUsage().rss));
const peak = () => Math.round(process.resourceUsage().maxRSS / 1024);
const out: Record<string, number | string> = { mode, shape: values.shape!, tokens: T };
const t0 = performance.now();

const engine = new LlamaModel(config, randomWeights(config, 'bf16'));
out.engine_weights_mib = mib(engine.weightBytes());
out.rss_engine_mib = rss();
const policy = trainableFromChatModel(engine, { frozen });
out.rss_policy_mib = rss();
const adapter = LoraAdapter.create(policy, { rank: 16, alpha: 32, dropout: 0, targets: 'all' });
adapter.attach(policy);

let st = 99;
const ids = (n: number) => Array.from({ length: n }, () => ((st = (st * 1103515245 + 12345) >>> 0) >>> 8) % config.vocabSize);
const episodes = Array.from({ length: 4 }, () => ({ prompt: ids(T / 2), answer: ids(T / 2) }));
const batch = collateEpisodes(episodes, 0);
// The reference's log-probs, once (the adapter detached), as trainOffline computes them.
LoraAdapter.detach(policy);
const ref = tf.tidy(() => sequenceLogProbs(policy, batch));
out.rss_after_reference_mib = rss();
adapter.attach(policy);
const [refC, refR] = tf.split(ref, 2);
const names = adapter.paramNames;
const dpoStep = () => tf.tidy(() => {
  const f = (...ps: tf.Tensor[]) => dpoBatchLoss(policy, batch, refC!, refR!, 0.1, new Map([...policy.params, ...names.map((n, i): [string, tf.Tensor] => [n, ps[i]!])])).loss;
  const g = tf.valueAndGrads(f as (...a: tf.Tensor[]) => tf.Scalar)(names.map((n) => adapter.params.get(n)!));
  return { value: tf.keep(g.value), grads: g.grads.map((x) => tf.keep(x)) };
});
// Two steps: the second shows whether the first's memory is held (pools) or grows.
for (const k of [1, 2]) {
  const { value, grads } = dpoStep();
  out.dpo_loss = (value.dataSync() as Float32Array)[0]!.toFixed(4);
  tf.dispose([value, ...grads]);
  out[`rss_after_dpo_step${k}_mib`] = rss();
}
out.tf_bytes_mib = mib(tf.memory().numBytes);
out.peak_policy_mib = peak();

// The reward model beside it (PPO): its own base, as store.ts loads it.
// frozen + --reward same: a reward model on the policy's own version reads its engine (the job's
// sharedChat); otherwise it loads an engine of its own (another version, or the job before).
const rewardEngine = frozen && values.reward === 'same' ? engine : new LlamaModel(config, randomWeights(config, 'bf16'));
out.reward_base = frozen && values.reward === 'same' ? 'shared' : 'own';
const reward = trainableFromChatModel(rewardEngine, { frozen });
const rAdapter = LoraAdapter.create(reward, { rank: 16, alpha: 32, dropout: 0, targets: 'all' });
if (frozen) rAdapter.attach(reward);
else {
  rAdapter.merge(reward);
  rAdapter.dispose();
}
const h = tf.tidy(() => reward.hidden(batch.x, {}, reward.params));
h.dispose();
out.rss_with_reward_mib = rss();
out.peak_mib = peak();
out.params = policy.numParameters;
out.peak_bytes_per_param = (peak() * 2 ** 20 / Number(policy.numParameters)).toFixed(2);
out.wall_s = ((performance.now() - t0) / 1000).toFixed(1);
console.log(Object.entries(out).map(([k, v]) => `${k}=${v}`).join(' '));
