import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { SqliteStore } from '../../src/core/sqlite-store.ts';
import { ensureBackend } from '../../src/model/backend.ts';
import { GPT } from '../../src/model/gpt.ts';
import { saveModelFiles } from '../../src/model/model-files.ts';
import { ModelRegistry } from '../../src/model/registry.ts';
import { CharTokenizer } from '../../src/model/tokenizer/index.ts';
import { SimulatedUsers } from '../../src/training/simulated-users.ts';
import { scenarioText, simulateFeedback, syntheticFacts } from '../../src/training/reward/simulated-feedback.ts';

export const FACTS = syntheticFacts(40);

export function tokenizer(): CharTokenizer {
  return CharTokenizer.fromText(scenarioText(FACTS), { specialTokens: true });
}

/** A tiny character-level GPT over the scenario's alphabet (random weights: the base is frozen). */
export function tinyBase(seed = 5): { gpt: GPT; tok: CharTokenizer } {
  const tok = tokenizer();
  return { gpt: GPT.create({ vocabSize: tok.vocabSize, blockSize: 128, nLayer: 2, nHead: 2, nEmbd: 32, dropout: 0, bias: false }, seed), tok };
}

/**
 * A home with a registered base model (v1) and simulated users' votes on `perQuestion` answers
 * to each of the 40 questions, recorded through the store as real thumbs are.
 */
export async function simulatedHome(options: { perQuestion?: number; noise?: number; seed?: number } = {}) {
  await ensureBackend();
  const home = mkdtempSync(join(tmpdir(), 'teamllm-reward-'));
  const { gpt, tok } = tinyBase();
  const folder = join(home, 'base-model');
  await saveModelFiles(folder, gpt, tok);
  gpt.dispose();
  const version = (await new ModelRegistry(home).register(folder, { source: 'test', promote: true })).version;
  const store = new SqliteStore(join(home, 'teamllm.db'));
  const users = new SimulatedUsers({ seed: options.seed ?? 2, noise: options.noise ?? 0.05 });
  const sim = await simulateFeedback(store, FACTS, users, { answersPerQuestion: options.perQuestion ?? 8, distractors: 0, seed: options.seed ?? 4 });
  return { home, store, version, users, sim };
}
