/**
 * A small, fully known world for proving that the feedback loop works (tests and
 * `npm run bench -- rlhf`): a handful of handbook facts, questions about them with the fact's
 * passage retrieved as context, and two ways to answer — quoting the passage ("Annual leave is 25
 * days per year.") or not ("Please check with HR.").
 *
 * The SFT policy is trained on both answers in equal shares, so it quotes about half the time:
 * the simulated users (QUOTES_SOURCE: they like quotes) then have something to prefer, and RLHF
 * has variance to work with. A policy that never quotes would give every answer the same vote.
 */
import { existsSync } from 'node:fs';
import path from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import { loadModelFiles, saveModelFiles } from '../../model/model-files.ts';
import { GPT } from '../../model/gpt.ts';
import type { GPTConfig } from '../../model/config.ts';
import { CharTokenizer, type Tokenizer } from '../../model/tokenizer/index.ts';
import { Random, mixSeed } from '../../model/random.ts';
import type { AnswerRecord, BotStore, Source } from '../../core/index.ts';
import { AdamW } from '../adamw.ts';
import { encodeQaPrompt } from '../../model/qa-prompt.ts';
import { collate } from '../sft/train.ts';
import type { QaQuestion, QaRetriever } from '../eval/qa-eval.ts';
import { answerText, sampleAnswers, stopIdsFor } from './policy.ts';

export interface ToyFact {
  passage: string;
  questions: string[];
  /** The short answer the QA evaluation looks for. */
  gold: string;
}

export const TOY_FACTS: ToyFact[] = [
  { passage: 'Annual leave is 25 days per year.', questions: ['How long is annual leave?', 'How many leave days do I get?'], gold: '25 days' },
  { passage: 'Expenses are paid within 10 days.', questions: ['When are expenses paid?', 'How fast are expenses paid?'], gold: '10 days' },
  { passage: 'The office opens at 8 on weekdays.', questions: ['When does the office open?', 'What time is the office open?'], gold: '8' },
  { passage: 'Parking costs 5 euros per day.', questions: ['How much is parking?', 'What does parking cost?'], gold: '5 euros' },
  { passage: 'Remote work is allowed 2 days a week.', questions: ['Can I work from home?', 'How often is remote work ok?'], gold: '2 days' },
  { passage: 'Payday is the 25th of each month.', questions: ['When is payday?', 'What day is salary paid?'], gold: '25th' },
];

/** What an answer that does not quote says. */
export const GENERIC_ANSWER = 'Please check with HR.';

export interface ToyQuestion {
  id: string;
  question: string;
  passages: Source[];
  gold: string;
  quote: string;
  /** 'train' (asked by users, rated) or 'test' (held out for evaluation). */
  split: 'train' | 'test';
}

/** Every question of the world; the last phrasing of each fact is held out. */
export function toyQuestions(facts: ToyFact[] = TOY_FACTS): ToyQuestion[] {
  return facts.flatMap((f, i) =>
    f.questions.map((q, j) => ({
      id: `toy-${i}-${j}`,
      question: q,
      passages: [{ source: 'hb', title: 'HB', text: f.passage, score: 1 }],
      gold: f.gold,
      quote: f.passage,
      split: j === f.questions.length - 1 ? ('test' as const) : ('train' as const),
    })),
  );
}

export function toyTokenizer(facts: ToyFact[] = TOY_FACTS): CharTokenizer {
  const text = facts.map((f) => [f.passage, ...f.questions, f.gold].join(' ')).join(' ') + GENERIC_ANSWER + '[]()1234567890 .,?!\nHB hb';
  return CharTokenizer.fromText(text, { specialTokens: true });
}

/** Retrieval in the toy world: a question's own passages. */
export function toyRetriever(questions: ToyQuestion[]): QaRetriever {
  const by = new Map(questions.map((q) => [q.question, q.passages]));
  return { search: async (query: string) => by.get(query) ?? [] };
}

export function toyQaQuestions(questions: ToyQuestion[]): QaQuestion[] {
  return questions.map((q) => ({ id: q.id, question: q.question, answer: q.gold, source: 'hb', split: q.split }));
}

export interface ToySftOptions {
  /** Share of examples answered with the quote (default 0.5). */
  quoteShare?: number;
  steps?: number;
  batchSize?: number;
  learningRate?: number;
  seed?: number;
  config?: Partial<GPTConfig>;
  /** Answer tokens the prompt leaves room for (as at answer time). */
  reserve?: number;
}

export const TOY_MAX_ANSWER_TOKENS = 40;

/**
 * A tiny chat model trained from scratch (all weights) on the world's questions, answered with
 * the quote in `quoteShare` of the examples and the generic answer in the rest. This stands in for
 * "the SFT model" of a real deployment.
 */
export function trainToySftPolicy(tokenizer: Tokenizer, questions: ToyQuestion[], options: ToySftOptions = {}): GPT {
  const seed = options.seed ?? 1;
  const quoteShare = options.quoteShare ?? 0.5;
  const model = GPT.create({ vocabSize: tokenizer.vocabSize, blockSize: 128, nLayer: 2, nHead: 2, nEmbd: 48, dropout: 0, bias: false, ...options.config }, seed);
  const blockSize = model.config.blockSize;
  const reserve = options.reserve ?? TOY_MAX_ANSWER_TOKENS;
  const end = tokenizer.special.end!;
  // Prompt + answer exactly as answer time lays them out (encodeQaPrompt), loss on the answer only.
  const encoded: { ids: number[]; targets: number[] }[] = [];
  const rng = new Random(mixSeed(seed, 17));
  const pool = questions;
  const n = 20 * pool.length;
  for (let i = 0; i < n; i++) {
    const q = pool[i % pool.length]!;
    const quote = rng.uniform() < quoteShare;
    const prompt = encodeQaPrompt(tokenizer, { question: q.question, passages: q.passages }, { blockSize, reserve });
    const answer = [...tokenizer.encode(quote ? q.quote : GENERIC_ANSWER), end];
    const ids = [...prompt, ...answer];
    const targets = ids.map((_, t) => (t >= prompt.length - 1 && t + 1 < ids.length ? ids[t + 1]! : -1));
    encoded.push({ ids, targets });
  }
  const opt = new AdamW({ weightDecay: 0 }, () => false);
  const B = options.batchSize ?? 16;
  const steps = options.steps ?? 250;
  const lr = options.learningRate ?? 3e-3;
  let batch: { x: tf.Tensor; y: tf.Tensor } | undefined;
  const names = model.paramNames;
  const lossAndGrads = tf.valueAndGrads((...ps: tf.Tensor[]) => model.loss(batch!.x, batch!.y, {}, ps));
  for (let step = 0; step < steps; step++) {
    const picked = Array.from({ length: B }, () => encoded[rng.int(encoded.length)]!);
    const c = collate(picked, end);
    batch = c;
    const res = tf.tidy(() => lossAndGrads(model.paramList()));
    c.x.dispose();
    c.y.dispose();
    res.value.dispose();
    const rate = lr * Math.min(1, (step + 1) / 20) * (0.1 + 0.9 * 0.5 * (1 + Math.cos((Math.PI * step) / steps)));
    model.setParams(opt.apply(model.params, new Map(names.map((name, i) => [name, res.grads[i]!])), rate));
    res.grads.forEach((g) => g.dispose());
  }
  opt.dispose();
  return model;
}

/**
 * The bot answering users: each question is answered `perQuestion` times by `model` (sampled, as
 * "regenerate" would) and saved as an answer record, ready to be rated.
 */
export async function answerAndRecord(
  store: BotStore,
  model: GPT,
  tokenizer: Tokenizer,
  questions: ToyQuestion[],
  options: { perQuestion: number; seed: number; modelVersion?: string; maxTokens?: number },
): Promise<AnswerRecord[]> {
  const stopIds = stopIdsFor(tokenizer, model.config.vocabSize);
  const rng = new Random(mixSeed(options.seed, 23));
  const maxTokens = options.maxTokens ?? TOY_MAX_ANSWER_TOKENS;
  const out: AnswerRecord[] = [];
  for (const q of questions) {
    const prompt = encodeQaPrompt(tokenizer, { question: q.question, passages: q.passages }, { blockSize: model.config.blockSize, reserve: maxTokens });
    for (const a of sampleAnswers(model, prompt, options.perQuestion, { maxTokens, stopIds, rng })) {
      out.push(
        await store.saveAnswer({
          platform: 'web',
          workspace: 'toy',
          channel: 'toy',
          messageId: `${q.id}-${out.length}`,
          userId: `asker-${out.length % 5}`,
          question: q.question,
          passages: q.passages,
          prompt: tokenizer.decode(prompt),
          output: answerText(tokenizer, a.tokens, stopIds),
          modelName: 'toy',
          modelVersion: options.modelVersion ?? 'sft',
          latencyMs: 1,
        }),
      );
    }
  }
  return out;
}

/**
 * The toy SFT policy from `dir` when it is there (tests keep one in tests/rlhf/fixtures), else
 * trained now (about a minute on two cores) and saved there.
 */
export async function loadOrTrainToyPolicy(dir: string, options: ToySftOptions = {}): Promise<{ model: GPT; tokenizer: Tokenizer; trained: boolean }> {
  if (existsSync(path.join(dir, 'model.safetensors'))) {
    const { model, tokenizer } = await loadModelFiles(dir);
    return { model, tokenizer, trained: false };
  }
  const tokenizer = toyTokenizer();
  const model = trainToySftPolicy(tokenizer, toyQuestions(), { steps: 600, ...options });
  await saveModelFiles(dir, model, tokenizer, { source: 'sft', toy: true, quoteShare: options.quoteShare ?? 0.5 });
  return { model, tokenizer, trained: true };
}
