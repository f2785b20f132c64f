/**
 * PPO as in InstructGPT (Ouyang et al., 2022; the recipe of Ziegler et al., 2019, and TRL's
 * PPOTrainer):
 *
 *   policy     the SFT model + a trainable LoRA adapter (B = 0 at the start: policy = SFT)
 *   reference  the same model without the adapter (frozen)
 *   value      a value head sharing the policy's trunk (policy.ts, ValueHead)
 *
 * Each iteration: sample answers to prompts drawn from real questions (with their retrieved
 * passages as context); score them with the reward model; whiten the scores over the batch; give
 * every answer token the reward −β·(log π − log π_ref) and the last token the score too; GAE
 * (γ, λ) for advantages and returns; whiten the advantages; then a few epochs of minibatch updates
 * of the clipped policy loss + vfCoef × the clipped value loss; finally adapt β towards the target
 * KL. Every iteration logs reward, KL, β, entropy, losses, clip fraction and the mean ratio.
 */
import * as tf from '@tensorflow/tfjs-core';
import type { Tensor } from '@tensorflow/tfjs-core';
import type { GPT } from '../../model/gpt.ts';
import type { Tokenizer } from '../../model/tokenizer/index.ts';
import { LoraAdapter } from '../../model/lora/adapter.ts';
import type { LoraConfigInput } from '../../model/lora/config.ts';
import { Random, mixSeed } from '../../model/random.ts';
import { latestCheckpointExtra, loadTrainerCheckpoint, trainerCheckpoints, type TrainerCheckpointState } from '../checkpoint.ts';
import { AdamW } from '../adamw.ts';
import { clippedUpdate, TrainingLoop, type StepOutcome } from '../loop.ts';
import type { RewardModel } from '../reward/reward-model.ts';
import { AdaptiveKlController, gae, ppoLosses, tokenRewards, whiten } from './losses.ts';
import { answerLogProbs, collateEpisodes, perEpisode, policyForward, sampleAnswers, ValueHead, withoutAdapter, type Episode } from './policy.ts';
import { teamllmEpisodes, type EpisodeCodec, type PromptLayout, type RlhfPrompt } from './episodes.ts';

export interface PpoOptions {
  /** The SFT policy (its weights stay frozen; the adapter is what trains). */
  model: GPT;
  /**
   * How prompts and sampled answers become ids and back: `episodes` (an imported chat model's own
   * template, chat-episodes.ts), or a model trained here's `tokenizer` and `layout`. The reward
   * model gets the answers' text, which it encodes its own way (another tokenizer, another template).
   */
  episodes?: EpisodeCodec;
  tokenizer?: Tokenizer;
  layout?: PromptLayout;
  prompts: readonly RlhfPrompt[];
  reward: RewardModel;
  /** The base's registry version, kept with the adapter (an imported model's). */
  baseVersion?: string;
  lora?: LoraConfigInput;
  /** Continue training this adapter instead of a fresh one. */
  adapter?: LoraAdapter;
  steps: number;
  promptsPerStep?: number;
  samplesPerPrompt?: number;
  ppoEpochs?: number;
  /** Episodes per gradient step (default: the whole batch). */
  minibatchSize?: number;
  learningRate?: number;
  clip?: number;
  clipValue?: number;
  vfCoef?: number;
  gamma?: number;
  lambda?: number;
  /** Initial KL coefficient β, the target KL (nats per answer) and the controller's horizon. */
  initKlCoef?: number;
  targetKl?: number;
  klHorizon?: number;
  /** Adapt β (default true); false keeps it fixed. */
  adaptiveKl?: boolean;
  whitenRewards?: boolean;
  gradClip?: number;
  seed?: number;
  signal?: AbortSignal;
  /** Where checkpoints go (and are resumed from); without it the run keeps none. */
  runDir?: string;
  /** Iterations between checkpoints (one is also written when the run is stopped). Default 10. */
  checkpointInterval?: number;
  /** The caller's own state to keep in each checkpoint: read back with readPpoCheckpointExtra. */
  checkpointExtra?: () => unknown;
  onStep?: (stats: PpoStepStats) => void | Promise<void>;
}

const PPO_FORMAT = 'teamllm-rlhf-ppo-checkpoint/1';

/** What a PPO checkpoint's state.json holds besides the tensors (LoRA, value head, AdamW moments). */
interface PpoCheckpointState extends TrainerCheckpointState {
  rng: number[];
  order: number[];
  klCoef: number;
  history: PpoStepStats[];
  extra?: unknown;
}

/** The newest checkpoint of this trainer in runDir: its step and the caller's extra state, if any. */
export const readPpoCheckpointExtra = (runDir: string) => latestCheckpointExtra(runDir, PPO_FORMAT);

export interface PpoStepStats {
  step: number;
  /** Mean raw reward-model score of this iteration's answers. */
  reward: number;
  /** Mean sequence KL(π‖π_ref) of the answers, nats (from the samples). */
  kl: number;
  /** β used for this iteration's rewards, and after the update. */
  klCoef: number;
  nextKlCoef: number;
  /** Mean per-token entropy on the answers. */
  entropy: number;
  policyLoss: number;
  valueLoss: number;
  clipFraction: number;
  approxKl: number;
  /** Mean importance ratio π/π_old at the first minibatch of the first epoch (1 before any update). */
  firstRatio: number;
  answerTokens: number;
  ms: number;
}

export interface PpoResult {
  adapter: LoraAdapter;
  valueHead: ValueHead;
  history: PpoStepStats[];
  status: 'completed' | 'aborted';
  /** Step of the newest checkpoint in runDir (a stopped run continues from it). */
  checkpointStep?: number;
  /** Step the run continued from, when it resumed from a checkpoint. */
  resumedFrom?: number;
}

interface Rollout {
  episodes: Episode[];
  /** Flat arrays over each episode's answer tokens, per episode. */
  oldLogp: number[][];
  refLogp: number[][];
  oldValues: number[][];
  advantages: number[][];
  returns: number[][];
}

export async function trainPpo(o: PpoOptions): Promise<PpoResult> {
  const { model } = o;
  const codec = o.episodes ?? (o.tokenizer && o.layout ? teamllmEpisodes(o.tokenizer, o.layout, model.config.vocabSize) : undefined);
  if (!codec) throw new Error('PPO needs the episodes codec, or the tokenizer and prompt layout of a model trained here');
  const seed = o.seed ?? 1;
  const rng = new Random(mixSeed(seed, 41));
  const { pad, stopIds } = codec;
  if (o.prompts.length === 0) throw new Error('PPO needs prompts: there are no answered questions in the records');
  const adapter = o.adapter ?? LoraAdapter.create(model, { dropout: 0, ...(o.lora ?? {}) }, { seed, ...(o.baseVersion ? { version: o.baseVersion } : {}), meta: { source: 'rlhf-ppo' } });
  adapter.attach(model);
  const head = new ValueHead(model.config.vocabSize);
  const opt = new AdamW({ weightDecay: 0 }, () => false);
  const kl = new AdaptiveKlController(o.initKlCoef ?? 0.2, o.targetKl ?? 1, o.klHorizon ?? 200);
  const promptsPerStep = Math.min(o.promptsPerStep ?? 4, o.prompts.length);
  const perPrompt = o.samplesPerPrompt ?? 4;
  const epochs = o.ppoEpochs ?? 4;
  const clip = o.clip ?? 0.2;
  const clipValue = o.clipValue ?? 0.2;
  const vfCoef = o.vfCoef ?? 0.1;
  const lr = o.learningRate ?? 1e-3;
  const gradClip = o.gradClip ?? 1;
  const history: PpoStepStats[] = [];
  const encoded = o.prompts.map((p) => codec.prompt(p));
  let order: number[] = [];

  const run = {
    seed, steps: o.steps, promptsPerStep, perPrompt, epochs, clip, clipValue, vfCoef, lr, gradClip, lora: adapter.config, prompts: o.prompts.length,
    minibatchSize: o.minibatchSize ?? null, gamma: o.gamma ?? 1, lambda: o.lambda ?? 0.95, initKlCoef: o.initKlCoef ?? 0.2, targetKl: o.targetKl ?? 1,
    klHorizon: o.klHorizon ?? 200, adaptiveKl: o.adaptiveKl !== false, whitenRewards: o.whitenRewards !== false,
  };
  let resumedFrom: number | undefined;
  let found: Awaited<ReturnType<typeof loadTrainerCheckpoint<PpoCheckpointState>>>;
  try {
    found = o.runDir ? await loadTrainerCheckpoint<PpoCheckpointState>(o.runDir, { format: PPO_FORMAT, run, what: 'ppo' }, opt) : undefined;
  } catch (e) {
    LoraAdapter.detach(model);
    if (!o.adapter) adapter.dispose();
    head.dispose();
    opt.dispose();
    throw e;
  }
  if (found) {
    const st = found.state;
    adapter.setParams(new Map(adapter.paramNames.map((nm) => [nm, found.trainables.get(nm)!])));
    head.setParams(found.trainables);
    rng.setState(st.rng);
    order = [...st.order];
    kl.value = st.klCoef;
    history.push(...st.history);
    resumedFrom = st.step;
  }
  let stats: Omit<PpoStepStats, 'step' | 'ms'> | undefined;
  const iteration = async (): Promise<StepOutcome> => {
    // 1. Rollouts from the current policy.
    const episodes: Episode[] = [];
    const texts: { question: string; passages: RlhfPrompt['passages']; answer: string }[] = [];
    for (let i = 0; i < promptsPerStep; i++) {
      if (order.length === 0) order = rng.permutation(o.prompts.length);
      const pi = order.pop()!;
      for (const a of sampleAnswers(model, encoded[pi]!, perPrompt, { maxTokens: codec.maxAnswerTokens, stopIds, rng })) {
        episodes.push({ prompt: encoded[pi]!, answer: a.tokens });
        texts.push({ question: o.prompts[pi]!.question, passages: o.prompts[pi]!.passages, answer: codec.text(a.tokens) });
      }
    }
    // 2. Scores, reference log-probs, old log-probs and values.
    const raw = await o.reward.score(texts);
    const scores = o.whitenRewards === false || raw.length < 2 ? raw : whiten(raw);
    const refLogp = withoutAdapter(model, () => answerLogProbs(model, episodes, pad).logp);
    const { oldLogp, oldValues, entropy } = evaluateOld(model, head, episodes, pad);
    const beta = kl.value;
    const rollout: Rollout = { episodes, oldLogp, refLogp, oldValues, advantages: [], returns: [] };
    for (let i = 0; i < episodes.length; i++) {
      const r = tokenRewards(scores[i]!, oldLogp[i]!, refLogp[i]!, beta);
      const g = gae(r, oldValues[i]!, o.gamma ?? 1, o.lambda ?? 0.95);
      rollout.advantages.push(g.advantages);
      rollout.returns.push(g.returns);
    }
    // Advantages whitened over every answer token of the batch.
    const flatAdv = whiten(rollout.advantages.flat());
    let k = 0;
    rollout.advantages = rollout.advantages.map((a) => a.map(() => flatAdv[k++]!));
    // 3. PPO epochs.
    const mb = Math.min(o.minibatchSize ?? episodes.length, episodes.length);
    let firstRatio = NaN;
    let last = { policyLoss: NaN, valueLoss: NaN, clipFraction: NaN, approxKl: NaN };
    for (let epoch = 0; epoch < epochs; epoch++) {
      const idx = rng.permutation(episodes.length);
      for (let s = 0; s + mb <= idx.length; s += mb) {
        const pick = idx.slice(s, s + mb);
        const st = updateMinibatch(model, adapter, head, opt, rollout, pick, pad, { clip, clipValue, vfCoef, lr, gradClip });
        if (Number.isNaN(firstRatio)) firstRatio = st.meanRatio;
        last = st;
      }
    }
    // 4. KL and β.
    const seqKl = episodes.reduce((acc, _, i) => acc + oldLogp[i]!.reduce((x, l, t) => x + l - refLogp[i]![t]!, 0), 0) / episodes.length;
    const nextBeta = o.adaptiveKl === false ? beta : kl.update(seqKl, episodes.length);
    const tokens = episodes.reduce((n, e) => n + e.answer.length, 0);
    const ent = entropy.flat().reduce((a, b) => a + b, 0) / Math.max(1, tokens);
    stats = {
      reward: raw.reduce((a, b) => a + b, 0) / raw.length,
      kl: seqKl,
      klCoef: beta,
      nextKlCoef: nextBeta,
      entropy: ent,
      policyLoss: last.policyLoss,
      valueLoss: last.valueLoss,
      clipFraction: last.clipFraction,
      approxKl: last.approxKl,
      firstRatio,
      answerTokens: tokens / episodes.length,
    };
    return { loss: last.policyLoss + vfCoef * last.valueLoss };
  };

  const loop = new TrainingLoop({
    totalSteps: o.steps,
    learningRate: lr,
    signal: o.signal,
    resumedFrom,
    step: iteration,
    onStep: async (ev) => {
      const s: PpoStepStats = { step: ev.step, ...stats!, ms: ev.ms };
      history.push(s);
      await o.onStep?.(s);
    },
    ...trainerCheckpoints(o.runDir, o.checkpointInterval ?? 10, opt, (at) => ({
      state: { format: PPO_FORMAT, step: at, run, rng: rng.getState(), order, klCoef: kl.value, history, ...(o.checkpointExtra ? { extra: o.checkpointExtra() } : {}) } satisfies PpoCheckpointState,
      trainables: [...adapter.params, ...head.params],
    })),
  });
  const { status, lastCheckpoint } = await loop.run();
  opt.dispose();
  return { adapter, valueHead: head, history, status, ...(lastCheckpoint !== undefined ? { checkpointStep: lastCheckpoint } : {}), ...(resumedFrom !== undefined ? { resumedFrom } : {}) };
}

/** Old log-probs (teacher forcing, the numbers the ratio is taken against), values and entropies. */
function evaluateOld(model: GPT, head: ValueHead, episodes: Episode[], pad: number, batchSize = 16) {
  const oldLogp: number[][] = [];
  const oldValues: number[][] = [];
  const entropy: number[][] = [];
  for (let i = 0; i < episodes.length; i += batchSize) {
    const chunk = episodes.slice(i, i + batchSize);
    const batch = collateEpisodes(chunk, pad);
    const outs = tf.tidy(() => {
      const o = policyForward(model, batch, undefined, head);
      return [o.logp, o.values!, o.entropy];
    });
    const [lp, v, en] = outs.map((t) => t.dataSync());
    oldLogp.push(...perEpisode(lp!, batch, chunk));
    oldValues.push(...perEpisode(v!, batch, chunk));
    entropy.push(...perEpisode(en!, batch, chunk));
    outs.forEach((t) => t.dispose());
    batch.x.dispose();
  }
  return { oldLogp, oldValues, entropy };
}

function updateMinibatch(
  model: GPT,
  adapter: LoraAdapter,
  head: ValueHead,
  opt: AdamW,
  r: Rollout,
  pick: number[],
  pad: number,
  h: { clip: number; clipValue: number; vfCoef: number; lr: number; gradClip: number },
): { policyLoss: number; valueLoss: number; clipFraction: number; approxKl: number; meanRatio: number } {
  const episodes = pick.map((i) => r.episodes[i]!);
  const batch = collateEpisodes(episodes, pad);
  const N = batch.B * batch.T;
  const fill = (src: number[][]) => {
    const a = new Float32Array(N);
    pick.forEach((ei, b) => src[ei]!.forEach((v, t) => (a[batch.offsets[b]! + t] = v)));
    return a;
  };
  const oldLogp = tf.tensor1d(fill(r.oldLogp));
  const oldValues = tf.tensor1d(fill(r.oldValues));
  const advantages = tf.tensor1d(fill(r.advantages));
  const returns = tf.tensor1d(fill(r.returns));
  const mask = tf.tensor1d(batch.mask);
  const names = adapter.paramNames;
  let side: Tensor[] = [];
  const f = tf.valueAndGrads((...ps: Tensor[]) => {
    const p = new Map(model.params);
    names.forEach((n, i) => p.set(n, ps[i]!));
    const out = policyForward(model, batch, p, { w: ps[names.length]!, b: ps[names.length + 1]! });
    const l = ppoLosses({ logp: out.logp, oldLogp, advantages, values: out.values!, oldValues, returns, mask }, h.clip, h.clipValue);
    const ratio = tf.div(tf.sum(tf.mul(tf.exp(tf.sub(out.logp, oldLogp)), mask)), tf.sum(mask));
    side = [l.policyLoss, l.valueLoss, l.clipFraction, l.approxKl, ratio].map((t) => tf.keep(t));
    return tf.add(l.policyLoss, tf.mul(h.vfCoef, l.valueLoss)) as tf.Scalar;
  });
  const res = tf.tidy(() => f([...adapter.paramList(), head.w, head.b]));
  const [policyLoss, valueLoss, clipFraction, approxKl, meanRatio] = side.map((t) => t.dataSync()[0]!);
  side.forEach((t) => t.dispose());
  res.value.dispose();
  const all = new Map<string, Tensor>([...adapter.params, ...head.params]);
  const gradNames = [...names, 'value_head.w', 'value_head.b'];
  const { next } = clippedUpdate(opt, all, new Map(gradNames.map((n, i) => [n, res.grads[i]!])), h.lr, h.gradClip);
  adapter.setParams(new Map(names.map((n) => [n, next.get(n)!])));
  head.setParams(next);
  res.grads.forEach((g) => g.dispose());
  [oldLogp, oldValues, advantages, returns, mask, batch.x].forEach((t) => t.dispose());
  return { policyLoss: policyLoss!, valueLoss: valueLoss!, clipFraction: clipFraction!, approxKl: approxKl!, meanRatio: meanRatio! };
}
