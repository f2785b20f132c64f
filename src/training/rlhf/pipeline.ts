/**
 * The whole RLHF job (`teamllm train rlhf --algo ppo|kto|dpo`, `/train rlhf algo=kto`):
 *
 * 1. the policy to improve: a registry version (default: the serving one, else the newest), with
 *    a fresh LoRA adapter; the same model without the adapter is the frozen reference;
 * 2. the data from the feedback store, split by question (the reward model's split): prompts for
 *    PPO, 👍/👎 for KTO, liked/disliked pairs for DPO;
 * 3. the reward model (`teamllm train reward`): required by PPO; for KTO and DPO it is used to
 *    measure the policy when there is one, otherwise the held-out implicit reward is the measure;
 * 4. before and after: reward on held-out prompts, KL to the reference, entropy, and the QA
 *    evaluation (retrieval in the loop) of the SFT issue;
 * 5. the gate (`rlhfGate`): the new policy is promoted only if its reward rises, its KL stays under
 *    `maxKl`, the users' own held-out votes do not turn against it (when a reward model judged the
 *    reward) and QA accuracy does not drop; otherwise it is registered but kept back, and the
 *    report says why.
 *
 * Run folder: metrics.jsonl, rlhf.png (curves), report.txt, adapter/, model/ (merged), before.json, after.json,
 * checkpoints/ (the newest checkpoint; a job whose run folder holds one continues from it).
 */
import { formatMetrics } from '../jobs/job-format.ts';
import { existsSync, promises as fs } from 'node:fs';
import path from 'node:path';
import { z } from 'zod';
import type { StoreOpener } from '../../core/index.ts';
import { ModelRegistry } from '../../model/registry.ts';
import { LoadedModel } from '../../model/loaded-model.ts';
import { saveModelFiles } from '../../model/model-files.ts';
import { writeDirAtomic, writeJsonAtomic } from '../../model/files.ts';
import { LoraAdapter } from '../../model/lora/adapter.ts';
import type { KnowledgeBaseOpener, TrainingKnowledgeBase } from '../../rag/knowledge-base-opener.ts';
import { openMetricsLog } from '../metrics-log.ts';
import { resolveBase } from '../base-model.ts';
import { bool, int, list, num } from '../stages/stage-params.ts';
import { evaluateQa, readQaQuestions, type QaRetriever, type QaScores } from '../eval/qa-eval.ts';
import type { RewardModel } from '../reward/reward-model.ts';
import type { Taste } from '../simulated-users.ts';
import { loadRewardModel } from '../reward/store.ts';
import { rlhfData, type RlhfSplit } from './data.ts';
import { evaluatePolicy, type PolicyEvaluation } from './evaluate.ts';
import { readOfflineCheckpointExtra, trainOffline, type OfflineStepStats } from './offline.ts';
import { readPpoCheckpointExtra, trainPpo, type PpoStepStats } from './ppo.ts';
import { collateEpisodes, sequenceLogProbs, withoutAdapter } from './policy.ts';
import { encodeEpisode, type PromptLayout } from './episodes.ts';
import { writePanels, type ChartPoint, type Panel } from './chart.ts';
import * as tf from '@tensorflow/tfjs-core';

const SAMPLE_HANDBOOK = path.resolve(path.dirname(new URL(import.meta.url).pathname), '../../../examples/handbook');


export const RLHF_ALGOS = ['ppo', 'kto', 'dpo'] as const;
export type RlhfAlgo = (typeof RLHF_ALGOS)[number];

export const RlhfJobParamsSchema = z
  .object({
    algo: z.enum(RLHF_ALGOS).default('ppo'),
    /** The policy to improve: a registry version (default: the serving one, else the newest) or a model folder. */
    base: z.string().optional(),
    /** Reward model name (default: the one in use). */
    reward: z.string().optional(),
    steps: int().optional(),
    learningRate: num().optional(),
    /** DPO/KTO: β (how far from the reference the implicit reward lets the policy go). */
    beta: num().optional(),
    rank: int().optional(),
    alpha: num().optional(),
    targets: z.string().optional(),
    batchSize: int().optional(),
    /** PPO: prompts and answers per iteration, epochs per batch, KL coefficient and target. */
    promptsPerStep: int().optional(),
    samplesPerPrompt: int().optional(),
    ppoEpochs: int().optional(),
    initKlCoef: num().optional(),
    targetKl: num().optional(),
    /**
     * The gate's bound on KL to the SFT policy (nats per answer). The gate measures reward with the
     * reward model the policy was optimised against, so the KL bound is what catches
     * over-optimisation: measured (docs/feedback-loop.md), runs that really improved stayed at KL
     * 0.18–1.2, over-optimised ones (reward up, users' preferred rate down) reached 3.0–12.1.
     */
    maxKl: num().default(2),
    /**
     * How far the users' held-out votes may turn against the policy (liked − disliked implicit
     * reward, nats) before the gate fails it; checked when a reward model judges the run.
     */
    marginTolerance: num().default(0),
    /** Answer tokens at most. */
    maxTokens: int().default(48),
    /** Share of questions held out (by question, never by row). */
    heldOutFraction: num().default(0.2),
    /** Seed of the held-out split (the reward stage's `seed`, default 0: the same questions are held out). */
    heldOutSeed: z.coerce.number().int().default(0),
    /** Answers sampled per held-out prompt to measure reward and KL. */
    evalSamples: int().default(4),
    /** Evaluate on held-out prompts every N steps (curves). */
    evalInterval: int().optional(),
    /** Steps between checkpoints (default PPO 10, KTO/DPO 20; one is also written when stopped). A job whose run folder holds one continues from it. */
    checkpointInterval: int().optional(),
    /** QA evaluation: questions JSONL, its held-out split, documents for retrieval, passages per question. */
    questions: z.string().optional(),
    evalSplit: z.string().default('test'),
    docs: list().optional(),
    k: int().default(3),
    answerTokens: int().default(32),
    skipQa: bool().default(false),
    /** How far QA F1 / contains-gold may fall and still pass (default 0: not at all). */
    qaTolerance: num().default(0),
    /** Read by the job runner: 'auto' promotes a result that passed the gate and was trained from the serving model; 'never' only registers. */
    promote: z.enum(['auto', 'never']).default('auto'),
    seed: z.coerce.number().int().default(1),
  })
  .strict();

export type RlhfJobParams = z.input<typeof RlhfJobParamsSchema>;

export interface RlhfProgress {
  stage: 'prepare' | 'rlhf' | 'evaluate';
  step: number;
  totalSteps: number;
  loss?: number;
  reward?: number;
  kl?: number;
}

export interface RlhfJobContext {
  home: string;
  runDir: string;
  /** The answers and votes to learn from. */
  store: StoreOpener;
  /** Where the QA evaluation's documents are indexed (a scratch knowledge base in the run folder). */
  knowledgeBases: KnowledgeBaseOpener;
  signal?: AbortSignal;
  log?: (line: string) => void;
  progress?: (ev: RlhfProgress) => void;
  /** A reward model to use instead of loading one from $TEAMLLM_HOME (tests, the demo). */
  rewardModel?: RewardModel;
  /** A retriever for the QA evaluation instead of indexing `docs` (tests, the demo). */
  retriever?: QaRetriever;
  /** A known taste (simulated users): the measures then include how often answers follow it. */
  taste?: Taste;
}

export interface RlhfMeasure {
  /** Reward-model score (mean over sampled answers) or, without one, the held-out implicit reward margin. */
  reward: number;
  rewardKind: 'reward-model' | 'implicit-margin';
  /**
   * With a reward model: the held-out implicit reward margin as well (liked − disliked log π/π_ref
   * on the users' own held-out votes), a check of the users' taste independent of the reward model.
   */
  heldOutMargin?: number;
  kl: number;
  entropy: number;
  policy?: PolicyEvaluation;
  qa?: QaScores;
}

/**
 * The promotion gate of an RLHF run: reward up, KL to the SFT policy within `maxKl`, the users'
 * own held-out votes not turned against (when a reward model was the judge: it is the model the
 * policy was optimised against, so it cannot be the only judge), QA not down.
 */
export function rlhfGate(
  before: RlhfMeasure,
  after: RlhfMeasure,
  o: { completed: boolean; maxKl: number; qaTolerance: number; marginTolerance: number; rewardName?: string },
): { passed: boolean; reasons: string[]; failed: string[] } {
  const reasons: string[] = [];
  const failed: string[] = [];
  let passed = o.completed;
  const fail = (reason: string) => {
    passed = false;
    reasons.push(reason);
    failed.push(reason);
  };
  const what = before.rewardKind === 'reward-model' ? `reward (${o.rewardName ?? 'reward model'})` : 'held-out implicit reward margin';
  if (after.reward > before.reward) reasons.push(`${what} rose: ${before.reward.toFixed(3)} → ${after.reward.toFixed(3)}`);
  else fail(`${what} did not rise: ${before.reward.toFixed(3)} → ${after.reward.toFixed(3)}`);
  if (after.kl <= o.maxKl) reasons.push(`KL to the SFT policy ${after.kl.toFixed(3)} ≤ bound ${o.maxKl}`);
  else fail(`KL to the SFT policy ${after.kl.toFixed(3)} is over the bound ${o.maxKl}`);
  if (before.heldOutMargin !== undefined && after.heldOutMargin !== undefined && Number.isFinite(before.heldOutMargin) && Number.isFinite(after.heldOutMargin)) {
    const m = `${before.heldOutMargin.toFixed(3)} → ${after.heldOutMargin.toFixed(3)}`;
    if (after.heldOutMargin >= before.heldOutMargin - o.marginTolerance) reasons.push(`the users' held-out votes agree (liked − disliked implicit reward ${m})`);
    else fail(`the users' held-out votes disagree with the reward model: liked − disliked implicit reward fell ${m}`);
  }
  if (before.qa && after.qa) {
    const fell = (['f1', 'containsGold', 'exactMatch'] as const).filter((m) => after.qa![m] < before.qa![m] - o.qaTolerance);
    const pct = (v: number) => `${(100 * v).toFixed(1)}%`;
    if (fell.length) {
      fail(`QA accuracy dropped: ${fell.map((m) => `${m} ${pct(before.qa![m])} → ${pct(after.qa![m])}`).join(', ')}`);
    } else reasons.push(`QA did not drop: F1 ${pct(before.qa.f1)} → ${pct(after.qa.f1)}, contains gold ${pct(before.qa.containsGold)} → ${pct(after.qa.containsGold)} (n=${after.qa.n})`);
  } else reasons.push('QA not evaluated (no held-out questions or skipQa)');
  return { passed, reasons, failed };
}

export interface RlhfJobResult {
  status: 'completed' | 'aborted';
  algo: RlhfAlgo;
  summary: string;
  report: string;
  before: RlhfMeasure;
  after: RlhfMeasure;
  gate: { passed: boolean; reasons: string[] };
  modelVersion?: string;
  baseVersion?: string;
  wallSec: number;
  steps: number;
  files: { chart: string; report: string; adapter: string; metrics: string };
  data: { prompts: number; votes: number; pairs: number; heldOutPrompts: number };
}

/** The folder sources are named relative to (as the SFT job does): the folder itself, or the common parent. */
function commonParent(paths: string[]): string {
  const dirs = paths.map((p) => path.resolve(p)).map((p) => (existsSync(p) && !/\.(md|txt|markdown|html|pdf|docx)$/i.test(p) ? p : path.dirname(p)));
  if (dirs.length === 1) return dirs[0]!;
  const parts = dirs.map((d) => d.split(path.sep));
  const out: string[] = [];
  for (let i = 0; parts.every((p) => p[i] !== undefined && p[i] === parts[0]![i]); i++) out.push(parts[0]![i]!);
  return out.join(path.sep) || path.sep;
}

const NO_POLICY = 'There is no model to improve: train one first (/train pretrain, then /train sft) or pass base=<model folder>';

/** Mean (liked − disliked) implicit reward log π/π_ref on held-out votes or pairs: 0 while policy = reference. */
function implicitMargin(loaded: LoadedModel, split: RlhfSplit, layout: PromptLayout): number {
  const { gpt, tokenizer } = loaded;
  const pad = tokenizer.special.end ?? 0;
  const items = split.pairs.length
    ? split.pairs.flatMap((p) => [
        { ep: encodeEpisode(tokenizer, p.prompt, p.chosen, layout), sign: 1 },
        { ep: encodeEpisode(tokenizer, p.prompt, p.rejected, layout), sign: -1 },
      ])
    : split.votes.map((v) => ({ ep: encodeEpisode(tokenizer, v.prompt, v.answer, layout), sign: v.liked ? 1 : -1 }));
  if (!items.length) return NaN;
  const logps = (ref: boolean) => {
    const out: number[] = [];
    for (let i = 0; i < items.length; i += 16) {
      const batch = collateEpisodes(items.slice(i, i + 16).map((x) => x.ep), pad);
      const t = ref ? withoutAdapter(gpt, () => tf.tidy(() => sequenceLogProbs(gpt, batch))) : tf.tidy(() => sequenceLogProbs(gpt, batch));
      out.push(...t.dataSync());
      t.dispose();
      batch.x.dispose();
    }
    return out;
  };
  const pol = logps(false);
  const ref = logps(true);
  const liked = items.map((x, i) => (x.sign > 0 ? pol[i]! - ref[i]! : NaN)).filter(Number.isFinite);
  const disliked = items.map((x, i) => (x.sign < 0 ? pol[i]! - ref[i]! : NaN)).filter(Number.isFinite);
  const mean = (a: number[]) => (a.length ? a.reduce((s, v) => s + v, 0) / a.length : 0);
  return mean(liked) - mean(disliked);
}

export async function runRlhfJob(params: RlhfJobParams, ctx: RlhfJobContext): Promise<RlhfJobResult> {
  const p = RlhfJobParamsSchema.parse(params);
  const log = ctx.log ?? (() => {});
  const { home, runDir } = ctx;
  const t0 = performance.now();
  await fs.mkdir(runDir, { recursive: true });
  const base = await resolveBase(home, p.base, NO_POLICY);

  // Data from the feedback store.
  const store = ctx.store.open();
  if (!store) throw new Error(`No feedback store at ${ctx.store.location}: RLHF learns from answers users rated 👍/👎`);
  const data = await rlhfData(store, { heldOutFraction: p.heldOutFraction, seed: p.heldOutSeed }).finally(() => store.close());
  const s = data.stats;
  log(`feedback: ${s.votes} rated answers (${s.up} 👍, ${s.down} 👎), ${s.pairs} pairs, ${s.questions} questions of which ${s.heldOutQuestions} held out`);
  if (p.algo === 'dpo' && data.train.pairs.length === 0) throw new Error('DPO needs pairs: no question has both a 👍 and a 👎 answer yet (they come from "regenerate" or two model versions). Try algo=kto, which uses single votes.');
  if (p.algo === 'kto' && data.train.votes.length < 2) throw new Error(`KTO needs rated answers: ${data.train.votes.length} in the training split`);
  if (p.algo === 'ppo' && data.train.prompts.length === 0) throw new Error('PPO needs questions from the answer records: none are rated yet');
  let evalPrompts = data.heldOut.prompts;
  if (evalPrompts.length === 0) {
    evalPrompts = data.train.prompts;
    log('no held-out questions (too little feedback): reward and KL are measured on training questions');
  }

  // Reward model: PPO cannot run without one; DPO/KTO use it to measure when there is one.
  let reward = ctx.rewardModel;
  let ownReward = false;
  if (!reward) {
    try {
      reward = await loadRewardModel(home, p.reward);
      ownReward = true;
      log(`reward model "${reward.info.name}" (${formatMetrics(reward.info.metrics)})`);
    } catch (err) {
      if (p.algo === 'ppo') throw new Error(`PPO needs a usable reward model: ${(err as Error).message}`);
      log(`no reward model (${(err as Error).message}): the held-out implicit reward margin is the measure`);
    }
  }

  const loaded = await LoadedModel.load(base.dir, base.version);
  const { gpt, tokenizer } = loaded;
  const layout: PromptLayout = { blockSize: gpt.config.blockSize, maxTokens: Math.min(p.maxTokens, Math.floor(gpt.config.blockSize / 2)) };

  // QA evaluation set.
  const homeCorpus = path.join(home, 'corpus');
  const docs = p.docs ?? (existsSync(homeCorpus) ? [homeCorpus] : [path.join(SAMPLE_HANDBOOK, 'en'), path.join(SAMPLE_HANDBOOK, 'zh')]);
  const questionsFile =
    p.questions ??
    (existsSync(path.join(home, 'eval', 'questions.jsonl'))
      ? path.join(home, 'eval', 'questions.jsonl')
      : docs.every((d) => path.resolve(d).startsWith(SAMPLE_HANDBOOK))
        ? path.join(SAMPLE_HANDBOOK, 'questions.jsonl')
        : undefined);
  let kb: TrainingKnowledgeBase | undefined;
  let retriever = ctx.retriever;
  const qaQuestions = !p.skipQa && questionsFile ? (await readQaQuestions(questionsFile)).filter((q) => q.split === p.evalSplit) : [];
  if (qaQuestions.length && !retriever) {
    kb = ctx.knowledgeBases.scratch(path.join(runDir, 'kb.sqlite'));
    await kb.addPaths(docs, { baseDir: commonParent(docs) });
    retriever = kb;
  }
  const qa = async (label: string): Promise<QaScores | undefined> => {
    if (!qaQuestions.length || !retriever) return undefined;
    const scores = await evaluateQa({
      model: loaded,
      kb: retriever,
      questions: qaQuestions,
      k: p.k,
      maxTokens: p.answerTokens,
      ...(ctx.signal ? { signal: ctx.signal } : {}),
      onQuestion: (done, total) => ctx.progress?.({ stage: 'evaluate', step: done, totalSteps: total }),
    });
    log(`QA ${label}: EM ${(100 * scores.exactMatch).toFixed(1)}%, F1 ${(100 * scores.f1).toFixed(1)}%, contains gold ${(100 * scores.containsGold).toFixed(1)}% (n=${scores.n})`);
    return scores;
  };
  const measure = async (label: string, step: number): Promise<RlhfMeasure> => {
    const policy = await evaluatePolicy(gpt, tokenizer, evalPrompts, { layout, samplesPerPrompt: p.evalSamples, seed: p.seed + 1000, ...(reward ? { reward } : {}), ...(ctx.taste ? { taste: ctx.taste } : {}) });
    const m: RlhfMeasure = reward
      ? { reward: policy.reward, rewardKind: 'reward-model', kl: policy.kl, entropy: policy.entropy, policy }
      : { reward: implicitMargin(loaded, data.heldOut.votes.length ? data.heldOut : data.train, layout), rewardKind: 'implicit-margin', kl: policy.kl, entropy: policy.entropy, policy };
    // The users' own held-out votes, independent of the reward model (only when there are some).
    if (reward && data.heldOut.votes.length) m.heldOutMargin = implicitMargin(loaded, data.heldOut, layout);
    const margin = m.heldOutMargin !== undefined ? `, held-out votes margin ${m.heldOutMargin.toFixed(3)}` : '';
    log(`${label} (step ${step}): reward ${m.reward.toFixed(3)} (${m.rewardKind})${margin}, KL ${m.kl.toFixed(3)}, entropy ${m.entropy.toFixed(3)}${ctx.taste ? `, ${ctx.taste.name} ${(100 * policy.preferredRate).toFixed(1)}%` : ''}`);
    return m;
  };

  // Resume: the newest checkpoint in runDir carries the before-measure and the curves so
  // far, so a resumed job neither re-measures the start nor loses its curves.
  interface PipelineExtra {
    before: RlhfMeasure;
    curves: Record<'reward' | 'kl' | 'entropy' | 'loss', ChartPoint[]>;
    evals: Record<'reward' | 'kl' | 'entropy', ChartPoint[]>;
  }
  const resumed = p.algo === 'ppo' ? await readPpoCheckpointExtra(runDir) : await readOfflineCheckpointExtra(runDir);
  const resumedExtra = resumed?.extra as PipelineExtra | undefined;
  if (resumed) log(`resuming from the checkpoint at step ${resumed.step}`);
  const metricsFile = path.join(runDir, 'metrics.jsonl');
  const metrics = await openMetricsLog(metricsFile, resumed?.step);
  const curves = resumedExtra?.curves ?? { reward: [] as ChartPoint[], kl: [] as ChartPoint[], entropy: [] as ChartPoint[], loss: [] as ChartPoint[] };
  const evals = resumedExtra?.evals ?? { reward: [] as ChartPoint[], kl: [] as ChartPoint[], entropy: [] as ChartPoint[] };
  const addEval = (step: number, m: RlhfMeasure) => {
    evals.reward.push({ step, value: m.reward });
    evals.kl.push({ step, value: m.kl });
    evals.entropy.push({ step, value: m.entropy });
  };
  let adapter: LoraAdapter | undefined;
  let status: RlhfJobResult['status'] = 'completed';
  let steps = 0;
  let before: RlhfMeasure;
  let after: RlhfMeasure;
  try {
    ctx.progress?.({ stage: 'prepare', step: 0, totalSteps: 1 });
    if (resumedExtra) {
      before = resumedExtra.before;
      steps = resumed!.step;
    } else {
      before = await measure('before', 0);
      before.qa = await qa('before');
      await writeJsonAtomic(path.join(runDir, 'before.json'), { ...before, policy: { ...before.policy, examples: before.policy?.examples.slice(0, 20) } });
      addEval(0, before);
    }
    let checkpointStep: number | undefined;
    const lora = { ...(p.rank ? { rank: p.rank } : { rank: 4 }), ...(p.alpha ? { alpha: p.alpha } : { alpha: 8 }), ...(p.targets ? { targets: p.targets } : {}) };
    const totalSteps = p.steps ?? (p.algo === 'ppo' ? 20 : 60);
    const evalInterval = p.evalInterval ?? Math.max(1, Math.ceil(totalSteps / 4));
    const common = { model: gpt, tokenizer, layout, lora, seed: p.seed, ...(ctx.signal ? { signal: ctx.signal } : {}) };
    const afterStep = async (step: number, line: Record<string, number>) => {
      steps = step;
      await metrics.appendFile(`${JSON.stringify({ step, ...line })}\n`);
      ctx.progress?.({ stage: 'rlhf', step, totalSteps, ...(line.loss !== undefined ? { loss: line.loss } : {}), ...(line.reward !== undefined ? { reward: line.reward } : {}), ...(line.kl !== undefined ? { kl: line.kl } : {}) });
      if (step % evalInterval === 0 && step < totalSteps) {
        const m = await measure('eval', step);
        addEval(step, m);
        await metrics.appendFile(`${JSON.stringify({ step, eval_reward: m.reward, eval_kl: m.kl, eval_entropy: m.entropy })}\n`);
      }
    };
    if (p.algo === 'ppo') {
      const r = await trainPpo({
        ...common,
        prompts: data.train.prompts,
        reward: reward!,
        steps: totalSteps,
        ...(p.promptsPerStep ? { promptsPerStep: p.promptsPerStep } : {}),
        ...(p.samplesPerPrompt ? { samplesPerPrompt: p.samplesPerPrompt } : {}),
        ...(p.ppoEpochs ? { ppoEpochs: p.ppoEpochs } : {}),
        ...(p.initKlCoef !== undefined ? { initKlCoef: p.initKlCoef } : {}),
        ...(p.targetKl !== undefined ? { targetKl: p.targetKl } : {}),
        learningRate: p.learningRate ?? 1e-3,
        runDir,
        ...(p.checkpointInterval ? { checkpointInterval: p.checkpointInterval } : {}),
        checkpointExtra: (): PipelineExtra => ({ before, curves, evals }),
        onStep: async (st: PpoStepStats) => {
          curves.reward.push({ step: st.step, value: st.reward });
          curves.kl.push({ step: st.step, value: st.kl });
          curves.entropy.push({ step: st.step, value: st.entropy });
          curves.loss.push({ step: st.step, value: st.policyLoss + st.valueLoss });
          await afterStep(st.step, { reward: st.reward, kl: st.kl, kl_coef: st.klCoef, entropy: st.entropy, policy_loss: st.policyLoss, value_loss: st.valueLoss, clip_fraction: st.clipFraction, approx_kl: st.approxKl, ms: Math.round(st.ms) });
        },
      });
      adapter = r.adapter;
      r.valueHead.dispose();
      status = r.status;
      checkpointStep = r.checkpointStep;
    } else {
      const r = await trainOffline({
        ...common,
        algo: p.algo,
        pairs: data.train.pairs,
        votes: data.train.votes,
        steps: totalSteps,
        beta: p.beta ?? 0.1,
        learningRate: p.learningRate ?? 1e-3,
        ...(p.batchSize ? { batchSize: p.batchSize } : {}),
        runDir,
        ...(p.checkpointInterval ? { checkpointInterval: p.checkpointInterval } : {}),
        checkpointExtra: (): PipelineExtra => ({ before, curves, evals }),
        onStep: async (st: OfflineStepStats) => {
          curves.loss.push({ step: st.step, value: st.loss });
          curves.reward.push({ step: st.step, value: st.rewardLiked - st.rewardDisliked });
          await afterStep(st.step, { loss: st.loss, reward_liked: st.rewardLiked, reward_disliked: st.rewardDisliked, ...(st.accuracy !== undefined ? { accuracy: st.accuracy } : {}), ...(st.zRef !== undefined ? { z_ref: st.zRef } : {}), ms: Math.round(st.ms) });
        },
      });
      adapter = r.adapter;
      status = r.status;
      checkpointStep = r.checkpointStep;
    }
    if (status !== 'completed') {
      throw new Error(
        checkpointStep !== undefined
          ? `RLHF (${p.algo}) stopped at step ${steps}: checkpoint saved at step ${checkpointStep}; /train resume continues from it`
          : `RLHF (${p.algo}) stopped at step ${steps}: nothing was saved (no step was finished; start it again)`,
      );
    }
    after = await measure('after', steps);
    after.qa = await qa('after');
    await writeJsonAtomic(path.join(runDir, 'after.json'), { ...after, policy: { ...after.policy, examples: after.policy?.examples.slice(0, 20) } });
    addEval(steps, after);
  } catch (err) {
    LoraAdapter.detach(gpt);
    adapter?.dispose();
    loaded.dispose();
    if (ownReward) reward?.dispose();
    throw err;
  } finally {
    await metrics.close();
    kb?.close();
  }

  // Curves.
  const qaPoints = (key: 'f1' | 'containsGold') => [before.qa, after.qa].flatMap((q, i) => (q ? [{ step: i === 0 ? 0 : steps, value: q[key] }] : []));
  const panels: Panel[] = [
    { title: p.algo === 'ppo' ? 'REWARD' : 'IMPLICIT REWARD MARGIN', line: curves.reward },
    { title: before.rewardKind === 'reward-model' ? 'HELD-OUT REWARD' : 'HELD-OUT MARGIN', dots: evals.reward, ref: { value: before.reward, label: 'BEFORE' } },
    { title: 'KL TO SFT', line: curves.kl, dots: evals.kl, ref: { value: p.maxKl, label: 'BOUND' } },
    { title: 'ENTROPY', line: curves.entropy, dots: evals.entropy },
    { title: p.algo === 'ppo' ? 'PPO LOSS' : `${p.algo.toUpperCase()} LOSS`, line: curves.loss },
    { title: 'QA F1 / CONTAINS', dots: qaPoints('f1'), line: qaPoints('containsGold') },
  ];
  const chartFile = path.join(runDir, 'rlhf.png');
  await writePanels(chartFile, `RLHF ${p.algo.toUpperCase()} ${base.version ?? path.basename(base.dir)}`, panels);

  // The gate.
  const { passed, reasons, failed } = rlhfGate(before, after, {
    completed: status === 'completed',
    maxKl: p.maxKl,
    qaTolerance: p.qaTolerance,
    marginTolerance: p.marginTolerance,
    ...(reward ? { rewardName: reward.info.name } : {}),
  });
  const gate = { passed, reasons };

  // Save and register; promotion is the job runner's (src/app/job-promotion.ts: gate passed, trained
  // from the serving model, promote not 'never').
  let modelVersion: string | undefined;
  const adapterDir = path.join(runDir, 'adapter');
  if (adapter && status === 'completed') {
    const m = (x: RlhfMeasure, pre: string) => ({ [`${pre}Reward`]: x.reward, [`${pre}Kl`]: x.kl, [`${pre}Entropy`]: x.entropy, ...(x.qa ? { [`${pre}QaF1`]: x.qa.f1, [`${pre}QaContainsGold`]: x.qa.containsGold } : {}) });
    const metricsOut: Record<string, number> = { ...m(after, 'rlhf'), ...m(before, 'base') };
    adapter.meta = { ...adapter.meta, algo: p.algo, steps, trainedAt: new Date().toISOString(), metrics: metricsOut, gate };
    await writeDirAtomic(adapterDir, (tmp) => adapter!.save(tmp));
    const merged = adapter.mergedModel(gpt);
    const modelDir = path.join(runDir, 'model');
    await writeDirAtomic(modelDir, (tmp) => saveModelFiles(tmp, merged, tokenizer, { source: 'rlhf', algo: p.algo, parent: base.version ?? null, base: base.dir, adapter: adapterDir, metrics: metricsOut, gate, trainedAt: new Date().toISOString() }));
    merged.dispose();
    const registry = new ModelRegistry(home);
    const registered = await registry.register(modelDir, { source: 'rlhf', metrics: metricsOut, ...(base.version ? { parent: base.version } : {}), notes: `${p.algo.toUpperCase()} LoRA adapter ${adapterDir}` });
    modelVersion = registered.version;
    await registry.annotate(modelVersion, { gate });
  }
  LoraAdapter.detach(gpt);
  adapter?.dispose();
  loaded.dispose();
  if (ownReward) reward?.dispose();

  const wallSec = (performance.now() - t0) / 1000;
  const pref = (x: RlhfMeasure) => `reward ${x.reward.toFixed(3)}, KL ${x.kl.toFixed(3)}, entropy ${x.entropy.toFixed(3)}${x.qa ? `, QA F1 ${(100 * x.qa.f1).toFixed(1)}%` : ''}`;
  const report = [
    `RLHF ${p.algo.toUpperCase()} on ${base.version ?? base.dir}: ${steps} steps in ${wallSec.toFixed(1)} s`,
    `data: ${data.train.prompts.length} training questions (${data.train.votes.length} votes, ${data.train.pairs.length} pairs), ${data.heldOut.prompts.length} held out`,
    `before: ${pref(before)}`,
    `after:  ${pref(after)}`,
    `gate: ${passed ? 'PASSED' : 'KEPT BACK'}`,
    ...reasons.map((r) => `  - ${r}`),
    modelVersion ? `registered ${modelVersion} (from ${base.version ?? base.dir})${passed ? '' : ': not to be promoted automatically (an admin can still /model promote it)'}` : 'nothing registered',
  ].join('\n');
  const reportFile = path.join(runDir, 'report.txt');
  await fs.writeFile(reportFile, `${report}\n`);
  log(report);
  const summary = status !== 'completed'
    ? `RLHF (${p.algo}) stopped at step ${steps}; nothing registered.`
    : passed
      ? `RLHF (${p.algo}) improved the model: ${reasons[0]}; KL ${after.kl.toFixed(3)} ≤ ${p.maxKl}. Registered ${modelVersion}.`
      : `RLHF (${p.algo}) result ${modelVersion} was kept back: ${failed.join('; ')}.`;
  return {
    status,
    algo: p.algo,
    summary,
    report,
    before,
    after,
    gate,
    ...(modelVersion ? { modelVersion } : {}),
    ...(base.version ? { baseVersion: base.version } : {}),
    wallSec,
    steps,
    files: { chart: chartFile, report: reportFile, adapter: adapterDir, metrics: metricsFile },
    data: { prompts: data.train.prompts.length, votes: data.train.votes.length, pairs: data.train.pairs.length, heldOutPrompts: data.heldOut.prompts.length },
  };
}
