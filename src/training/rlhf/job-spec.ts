/** What an RLHF job is asked (its parameters), what it is given (its context) and what it answers. */
import { z } from 'zod';
import type { StoreOpener } from '../../core/index.ts';
import type { KnowledgeBaseOpener } from '../../rag/knowledge-base-opener.ts';
import { bool, int, list, num } from '../stages/stage-params.ts';
import type { QaRetriever } from '../eval/qa-eval.ts';
import type { RewardModel } from '../reward/reward-model.ts';
import type { Taste } from '../simulated-users.ts';
import type { RlhfMeasure } from './gate.ts';

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
/** The parameters once parsed: defaults filled in. */
export type RlhfJobOptions = z.output<typeof RlhfJobParamsSchema>;

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
