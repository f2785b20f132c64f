/**
 * The cheaper alternatives to PPO, trained straight from the feedback records (no sampling, no
 * reward model in the loop): DPO on pairs (a liked and a disliked answer to one question) and KTO
 * on unpaired 👍/👎, each with a trainable LoRA on the SFT model and the model without it as the
 * frozen reference.
 *
 * Checkpoints (when `runDir` is given): every `checkpointInterval` steps and when stopped, the LoRA
 * tensors, the AdamW moments and step, the data position (the step: the seeded batch order is
 * replayed up to it) and the logged stats so far are written atomically under
 * `<runDir>/checkpoints/step-NNNNNNNN/` (only the newest is kept). A run whose runDir holds one
 * continues from it and ends with the same weights as an uninterrupted run of the same seed.
 */
import * as tf from '@tensorflow/tfjs-core';
import type { Tensor } from '@tensorflow/tfjs-core';
import type { GPT, Params } from '../../model/gpt.ts';
import type { Tokenizer } from '../../model/tokenizer/index.ts';
import { LoraAdapter } from '../../model/lora/adapter.ts';
import type { LoraConfigInput } from '../../model/lora/config.ts';
import { Random, mixSeed } from '../../model/random.ts';
import { latestCheckpointExtra, loadTrainerCheckpoint, trainerCheckpoints, type TrainerCheckpointState } from '../checkpoint.ts';
import { AdamW } from '../adamw.ts';
import { clippedUpdate, TrainingLoop, type StepOutcome } from '../loop.ts';
import { dpoLoss, ktoLoss, ktoReferencePoint } from './losses.ts';
import { collateEpisodes, sequenceLogProbs, withoutAdapter, type Episode, type EpisodeBatch } from './policy.ts';
import { teamllmEpisodes, type EpisodeCodec, type PromptLayout, type RlhfPrompt } from './episodes.ts';

export interface PreferencePair {
  prompt: RlhfPrompt;
  chosen: string;
  rejected: string;
}

export interface Vote {
  prompt: RlhfPrompt;
  answer: string;
  liked: boolean;
}

export interface OfflineOptions {
  model: GPT;
  /** How prompts and answers become ids: an imported chat model's `chatEpisodes`; default our template from tokenizer and layout. */
  episodes?: EpisodeCodec;
  tokenizer?: Tokenizer;
  layout?: PromptLayout;
  algo: 'dpo' | 'kto';
  pairs?: readonly PreferencePair[];
  votes?: readonly Vote[];
  lora?: LoraConfigInput;
  /** The base's registry version, kept with the adapter (as SFT keeps it). */
  baseVersion?: string;
  beta?: number;
  /** KTO's λ_D and λ_U (default: 1 and 1, or balanced by the counts as the paper suggests). */
  desirableWeight?: number;
  undesirableWeight?: number;
  steps: number;
  batchSize?: number;
  learningRate?: number;
  gradClip?: number;
  seed?: number;
  signal?: AbortSignal;
  /** Where checkpoints go (and are resumed from); without it the run keeps none. */
  runDir?: string;
  /** Steps between checkpoints (one is also written when the run is stopped). Default 20. */
  checkpointInterval?: number;
  /** The caller's own state to keep in each checkpoint (curves, evaluations): read back with readOfflineCheckpointExtra. */
  checkpointExtra?: () => unknown;
  onStep?: (stats: OfflineStepStats) => void | Promise<void>;
}

const OFFLINE_FORMAT = 'teamllm-rlhf-offline-checkpoint/1';

/** What an offline RLHF checkpoint's state.json holds besides the tensors. */
interface OfflineCheckpointState extends TrainerCheckpointState {
  history: OfflineStepStats[];
  extra?: unknown;
}

/** The newest checkpoint of this trainer in runDir: its step and the caller's extra state, if any. */
export const readOfflineCheckpointExtra = (runDir: string) => latestCheckpointExtra(runDir, OFFLINE_FORMAT);

export interface OfflineStepStats {
  step: number;
  loss: number;
  /** Mean implicit reward β·(log π − log π_ref) of liked / disliked answers in the batch. */
  rewardLiked: number;
  rewardDisliked: number;
  /** DPO: share of pairs whose implicit reward prefers the chosen answer. KTO: the reference point z. */
  accuracy?: number;
  zRef?: number;
  ms: number;
}

export interface OfflineResult {
  adapter: LoraAdapter;
  history: OfflineStepStats[];
  status: 'completed' | 'aborted';
  /** Step of the newest checkpoint in runDir (a stopped run continues from it). */
  checkpointStep?: number;
  /** Step the run continued from, when it resumed from a checkpoint. */
  resumedFrom?: number;
}

function refLogProbs(model: GPT, episodes: Episode[], pad: number, batchSize = 16): number[] {
  return withoutAdapter(model, () => {
    const out: number[] = [];
    for (let i = 0; i < episodes.length; i += batchSize) {
      const batch = collateEpisodes(episodes.slice(i, i + batchSize), pad);
      const t = tf.tidy(() => sequenceLogProbs(model, batch));
      out.push(...t.dataSync());
      t.dispose();
      batch.x.dispose();
    }
    return out;
  });
}

/**
 * DPO's loss on one batch of pairs: `batch` holds the chosen answers' rows, then the rejected
 * ones' (collateEpisodes([...chosen, ...rejected])); `refChosen`/`refRejected` their reference
 * log-probs [N]; `params` overrides parameters by name (the LoRA tensors being differentiated).
 * Also gives the implicit rewards β·(log π − log π_ref) of each side.
 */
export function dpoBatchLoss(model: GPT, batch: EpisodeBatch, refChosen: Tensor, refRejected: Tensor, beta: number, params?: Params): { loss: tf.Scalar; rewardChosen: Tensor; rewardRejected: Tensor } {
  const lp = sequenceLogProbs(model, batch, params);
  const [pc, pr] = tf.split(lp, 2);
  return { loss: dpoLoss(pc!, pr!, refChosen, refRejected, beta), rewardChosen: tf.mul(tf.sub(pc!, refChosen), beta), rewardRejected: tf.mul(tf.sub(pr!, refRejected), beta) };
}

export async function trainOffline(o: OfflineOptions): Promise<OfflineResult> {
  const { model } = o;
  const codec = o.episodes ?? (o.tokenizer && o.layout ? teamllmEpisodes(o.tokenizer, o.layout, model.config.vocabSize) : undefined);
  if (!codec) throw new Error('trainOffline needs episodes, or a tokenizer and a layout');
  const seed = o.seed ?? 1;
  const rng = new Random(mixSeed(seed, 53));
  const { pad } = codec;
  const beta = o.beta ?? 0.1;
  const B = o.batchSize ?? 8;
  const lr = o.learningRate ?? 1e-3;
  const gradClip = o.gradClip ?? 1;
  const adapter = LoraAdapter.create(model, { dropout: 0, ...(o.lora ?? {}) }, { seed, ...(o.baseVersion ? { version: o.baseVersion } : {}), meta: { source: `rlhf-${o.algo}` } });
  adapter.attach(model);
  const opt = new AdamW({ weightDecay: 0 }, () => false);
  const names = adapter.paramNames;
  const history: OfflineStepStats[] = [];

  // Encoded examples with their reference log-probs (computed once: the reference is frozen).
  let chosen: Episode[] = [];
  let rejected: Episode[] = [];
  let items: Episode[] = [];
  let labels: number[] = [];
  if (o.algo === 'dpo') {
    const pairs = o.pairs ?? [];
    if (pairs.length === 0) throw new Error('DPO needs pairs: questions with both a 👍 and a 👎 answer (e.g. after "regenerate")');
    chosen = pairs.map((p) => codec.episode(p.prompt, p.chosen));
    rejected = pairs.map((p) => codec.episode(p.prompt, p.rejected));
  } else {
    const votes = o.votes ?? [];
    if (votes.length < 2) throw new Error('KTO needs at least 2 rated answers');
    items = votes.map((v) => codec.episode(v.prompt, v.answer));
    labels = votes.map((v) => (v.liked ? 1 : 0));
  }
  const refChosen = chosen.length ? refLogProbs(model, chosen, pad) : [];
  const refRejected = rejected.length ? refLogProbs(model, rejected, pad) : [];
  const refItems = items.length ? refLogProbs(model, items, pad) : [];
  const n = o.algo === 'dpo' ? chosen.length : items.length;
  // KTO's λ: balance liked and disliked by their counts unless set (Ethayarajh et al., eq. 8's guidance).
  const nLiked = labels.filter((l) => l === 1).length;
  const nDisliked = labels.length - nLiked;
  const lambdaD = o.desirableWeight ?? 1;
  const lambdaU = o.undesirableWeight ?? (nLiked > 0 && nDisliked > 0 ? Math.min(4 / 3, Math.max(3 / 4, nLiked / nDisliked)) : 1);

  // A comparator shuffle, not data-order.ts's: it decides every DPO/KTO run's batches, and
  // existing checkpoints replay it, so it stays as it was.
  let order: number[] = [];
  const nextBatch = (): number[] => {
    const out: number[] = [];
    while (out.length < Math.min(B, n)) {
      if (order.length === 0) order = Array.from({ length: n }, (_, i) => i).sort(() => rng.uniform() - 0.5);
      out.push(order.pop()!);
    }
    return out;
  };

  const run = {
    algo: o.algo, seed, beta, batchSize: B, learningRate: lr, gradClip, steps: o.steps, lora: adapter.config, lambdaD, lambdaU,
    pairs: chosen.length, votes: items.length, liked: nLiked,
  };
  // Resume: the newest checkpoint in runDir, if it was made by this run's settings.
  let resumedFrom: number | undefined;
  let found: Awaited<ReturnType<typeof loadTrainerCheckpoint<OfflineCheckpointState>>>;
  try {
    found = o.runDir ? await loadTrainerCheckpoint<OfflineCheckpointState>(o.runDir, { format: OFFLINE_FORMAT, run, what: o.algo }, opt) : undefined;
  } catch (e) {
    LoraAdapter.detach(model);
    adapter.dispose();
    opt.dispose();
    throw e;
  }
  if (found) {
    const st = found.state;
    adapter.setParams(new Map(names.map((nm) => [nm, found.trainables.get(nm)!])));
    // Data position: replay the seeded batch order up to the checkpoint.
    for (let i = 0; i < st.step; i++) nextBatch();
    history.push(...st.history);
    resumedFrom = st.step;
  }
  let stats: Omit<OfflineStepStats, 'loss' | 'ms' | 'step'> = { rewardLiked: NaN, rewardDisliked: NaN };
  const paramsFrom = (ps: Tensor[]) => {
    const p = new Map(model.params);
    names.forEach((nm, i) => p.set(nm, ps[i]!));
    return p;
  };
  const mean = (a: number[]) => (a.length ? a.reduce((x, y) => x + y, 0) / a.length : NaN);
  const step = (): StepOutcome => {
    const pick = nextBatch();
    let side: Tensor[] = [];
    let lossFn: (...ps: Tensor[]) => tf.Scalar;
    const cleanup: { dispose(): void }[] = [];
    let zRef: number | undefined;
    if (o.algo === 'dpo') {
      const batch = collateEpisodes([...pick.map((i) => chosen[i]!), ...pick.map((i) => rejected[i]!)], pad);
      const rc = tf.tensor1d(pick.map((i) => refChosen[i]!));
      const rr = tf.tensor1d(pick.map((i) => refRejected[i]!));
      cleanup.push(batch.x, rc, rr);
      lossFn = (...ps) => {
        const r = dpoBatchLoss(model, batch, rc, rr, beta, paramsFrom(ps));
        side = [tf.keep(r.rewardChosen), tf.keep(r.rewardRejected)];
        return r.loss;
      };
    } else {
      // Reference point z from mismatched pairs: each answer with the next example's prompt.
      const mismatched = pick.map((i, j) => ({ prompt: items[pick[(j + 1) % pick.length]!]!.prompt, answer: items[i]!.answer }));
      const mb = collateEpisodes(mismatched, pad);
      const pm = tf.tidy(() => sequenceLogProbs(model, mb));
      const rm = withoutAdapter(model, () => tf.tidy(() => sequenceLogProbs(model, mb)));
      const z = ktoReferencePoint(pm.dataSync(), rm.dataSync());
      [pm, rm, mb.x].forEach((t) => t.dispose());
      const batch = collateEpisodes(pick.map((i) => items[i]!), pad);
      const ref = tf.tensor1d(pick.map((i) => refItems[i]!));
      const lab = tf.tensor1d(pick.map((i) => labels[i]!));
      cleanup.push(batch.x, ref, lab);
      lossFn = (...ps) => {
        const lp = sequenceLogProbs(model, batch, paramsFrom(ps));
        side = [tf.keep(tf.mul(tf.sub(lp, ref), beta))];
        return ktoLoss(lp, ref, lab, z, { beta, desirable: lambdaD, undesirable: lambdaU });
      };
      zRef = z;
    }
    const f = tf.valueAndGrads(lossFn);
    const res = tf.tidy(() => f(adapter.paramList()));
    const loss = res.value.dataSync()[0]!;
    res.value.dispose();
    if (!Number.isFinite(loss)) {
      [...res.grads, ...side, ...cleanup].forEach((t) => t.dispose());
      return { loss };
    }
    const { next } = clippedUpdate(opt, adapter.params, new Map(names.map((nm, i) => [nm, res.grads[i]!])), lr, gradClip);
    adapter.setParams(next);
    res.grads.forEach((g) => g.dispose());
    if (o.algo === 'dpo') {
      const c = Array.from(side[0]!.dataSync());
      const r = Array.from(side[1]!.dataSync());
      stats = { rewardLiked: mean(c), rewardDisliked: mean(r), accuracy: c.filter((v, i) => v > r[i]!).length / c.length };
    } else {
      const rw = Array.from(side[0]!.dataSync());
      const lab = pick.map((i) => labels[i]!);
      stats = { rewardLiked: mean(rw.filter((_, i) => lab[i] === 1)), rewardDisliked: mean(rw.filter((_, i) => lab[i] === 0)), zRef: zRef! };
    }
    side.forEach((t) => t.dispose());
    cleanup.forEach((t) => t.dispose());
    return { loss };
  };

  const loop = new TrainingLoop({
    totalSteps: o.steps,
    learningRate: lr,
    signal: o.signal,
    resumedFrom,
    step,
    diverged: (at, loss) => `${o.algo.toUpperCase()} diverged at step ${at} (loss ${loss}); try a lower learningRate`,
    onStep: async (ev) => {
      const s: OfflineStepStats = { step: ev.step, loss: ev.loss, ...stats, ms: ev.ms };
      history.push(s);
      await o.onStep?.(s);
    },
    ...trainerCheckpoints(o.runDir, o.checkpointInterval ?? 20, opt, (at) => ({
      state: { format: OFFLINE_FORMAT, step: at, run, history, ...(o.checkpointExtra ? { extra: o.checkpointExtra() } : {}) } satisfies OfflineCheckpointState,
      trainables: adapter.params,
    })),
  });
  const { status, lastCheckpoint } = await loop.run();
  opt.dispose();
  return { adapter, history, status, ...(lastCheckpoint !== undefined ? { checkpointStep: lastCheckpoint } : {}), ...(resumedFrom !== undefined ? { resumedFrom } : {}) };
}
