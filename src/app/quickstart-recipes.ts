/**
 * The quickstart's recipes as data: the zod schema a recipe must satisfy (recipe files of overrides,
 * TEAMLLM_QUICKSTART_RECIPE, are checked against it by resolveRecipe in quickstart.ts) and the
 * built-in recipes. The cache key hashes a recipe object as it stands here (quickstartKey:
 * JSON.stringify, field order included), so a reordered field trains again.
 */
import { z } from 'zod';

const PretrainRecipe = z
  .object({
    nLayer: z.number().int().positive(),
    nHead: z.number().int().positive(),
    nEmbd: z.number().int().positive(),
    blockSize: z.number().int().positive(),
    dropout: z.number().min(0).max(1),
    batchSize: z.number().int().positive(),
    maxIters: z.number().int().positive(),
    learningRate: z.number().positive(),
    minLearningRate: z.number().nonnegative(),
    warmupIters: z.number().int().nonnegative(),
    evalInterval: z.number().int().positive(),
    evalIters: z.number().int().positive(),
    checkpointInterval: z.number().int().positive(),
    /** Also pretrain on the QA examples generated from the documents, rendered in the chat template. */
    mixQa: z.boolean(),
  })
  .strict();

const SftRecipe = z
  .object({
    rank: z.number().int().positive(),
    alpha: z.number().positive(),
    targets: z.string(),
    epochs: z.number().positive(),
    batchSize: z.number().int().positive(),
    learningRate: z.number().positive(),
    k: z.number().int().positive(),
    maxContextTokens: z.number().int().positive().optional(),
    answerTokens: z.number().int().positive(),
    generateMax: z.number().int().positive().optional(),
    evalInterval: z.number().int().positive(),
    checkpointInterval: z.number().int().positive(),
    /** Skip the before/after QA evaluation: the adapter is then registered and served unconditionally (tests). */
    skipEval: z.boolean().default(false),
    /**
     * How the bot decodes answers (and the before/after evaluation scores them): 'extractive' copies
     * verbatim spans of the retrieved passages (src/model/extractive.ts), 'free' writes anything.
     */
    decoding: z.enum(['extractive', 'free']).default('free'),
  })
  .strict();

export const QuickstartRecipeSchema = z
  .object({
    name: z.string(),
    tokenizerVocabSize: z.number().int().min(300),
    pretrain: PretrainRecipe,
    sft: SftRecipe,
    /** Train the retrieval encoder and embed the passages into Chroma (hybrid retrieval). */
    embeddings: z.boolean(),
    /** Encoder training steps per ensemble member (default: the encoder's own). */
    embeddingSteps: z.number().int().positive().optional(),
    /** Generated questions the answer selector is trained on (0: the untrained selector, rules alone). */
    selectorQuestions: z.number().int().min(0).default(0),
    seed: z.number().int(),
  })
  .strict();

export type QuickstartRecipe = z.infer<typeof QuickstartRecipeSchema>;

/**
 * The recipes. `default` was picked by measurement on the 2-core development machine (README,
 * docs/quickstart.md): about 10.7 CPU-minutes in all; mixing the generated QA
 * into pretraining and two SFT epochs scored best of the variants measured. `tiny` is for tests
 * (seconds; its answers are noise).
 */
export const QUICKSTART_RECIPES: Record<string, QuickstartRecipe> = {
  default: {
    name: 'default',
    tokenizerVocabSize: 2048,
    pretrain: {
      nLayer: 4,
      nHead: 4,
      nEmbd: 128,
      blockSize: 192,
      dropout: 0.1,
      batchSize: 8,
      maxIters: 200,
      learningRate: 1e-3,
      minLearningRate: 1e-4,
      warmupIters: 50,
      evalInterval: 100,
      evalIters: 10,
      checkpointInterval: 100,
      mixQa: true,
    },
    sft: {
      rank: 8,
      alpha: 16,
      targets: 'q,k,v,attn_out',
      epochs: 2,
      batchSize: 8,
      learningRate: 2e-3,
      k: 2,
      maxContextTokens: 128,
      answerTokens: 24,
      evalInterval: 50,
      checkpointInterval: 50,
      skipEval: false,
      // Measured (tmp/notes/extractive.md): free decoding's answers are noise, extractive ones are
      // sentences of the retrieved passages.
      decoding: 'extractive',
    },
    embeddings: true,
    selectorQuestions: 300,
    seed: 1337,
  },
  tiny: {
    name: 'tiny',
    tokenizerVocabSize: 300,
    pretrain: {
      nLayer: 1,
      nHead: 2,
      nEmbd: 16,
      blockSize: 64,
      dropout: 0,
      batchSize: 2,
      maxIters: 4,
      learningRate: 1e-3,
      minLearningRate: 1e-4,
      warmupIters: 1,
      evalInterval: 2,
      evalIters: 1,
      checkpointInterval: 2,
      mixQa: true,
    },
    sft: {
      rank: 2,
      alpha: 4,
      targets: 'q,v',
      epochs: 0.02,
      batchSize: 2,
      learningRate: 2e-3,
      k: 1,
      maxContextTokens: 24,
      answerTokens: 4,
      generateMax: 40,
      evalInterval: 2,
      checkpointInterval: 2,
      skipEval: true,
      decoding: 'extractive',
    },
    // A few-step encoder would rank passages by noise; tests of that stage turn it on.
    embeddings: false,
    embeddingSteps: 5,
    selectorQuestions: 0,
    seed: 1337,
  },
};
