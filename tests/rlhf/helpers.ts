import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { SqliteStore } from '../../src/core/sqlite-store.ts';
import type { GPT } from '../../src/model/gpt.ts';
import type { Tokenizer } from '../../src/model/tokenizer/index.ts';
import { answerAndRecord, loadOrTrainToyPolicy, toyQuestions, TOY_MAX_ANSWER_TOKENS, type ToyQuestion } from '../../src/training/rlhf/toy-world.ts';
import { SimulatedUsers } from '../../src/training/simulated-users.ts';

export const TOY_FIXTURE = path.join(import.meta.dirname, 'fixtures', 'toy-sft');

export interface ToySetup {
  model: GPT;
  tokenizer: Tokenizer;
  questions: ToyQuestion[];
  layout: { blockSize: number; maxTokens: number };
}

export async function toySetup(): Promise<ToySetup> {
  const { model, tokenizer } = await loadOrTrainToyPolicy(TOY_FIXTURE);
  return { model, tokenizer, questions: toyQuestions(), layout: { blockSize: model.config.blockSize, maxTokens: TOY_MAX_ANSWER_TOKENS } };
}

/**
 * A feedback store where the SFT policy answered the 'train' questions `perQuestion` times each and
 * simulated users (likes quotes, 10% noise) rated every answer.
 */
export async function ratedStore(s: ToySetup, perQuestion = 20, file?: string): Promise<{ store: SqliteStore; dir: string; votes: { rated: number; up: number; down: number } }> {
  const dir = file ? path.dirname(file) : await fs.mkdtemp(path.join(os.tmpdir(), 'teamllm-rlhf-'));
  const store = new SqliteStore(file ?? path.join(dir, 'teamllm.db'));
  const answers = await answerAndRecord(store, s.model, s.tokenizer, s.questions.filter((q) => q.split === 'train'), { perQuestion, seed: 4 });
  const votes = await new SimulatedUsers({ seed: 2 }).rate(store, answers);
  return { store, dir, votes };
}
