/**
 * The quickstart's cache: the key of a run (its inputs and recipe), the state of the last finished
 * run, and whether a run is needed at all.
 */
import { createHash } from 'node:crypto';
import { existsSync, promises as fs } from 'node:fs';
import { join } from 'node:path';
import { ModelRegistry, type ModelVersion } from '../model/registry.ts';
import { writeJsonAtomic } from '../model/files.ts';
import type { Config } from './config.ts';
import { documentFiles, type QuickstartInputs } from './quickstart-inputs.ts';
import type { QuickstartRecipe } from './quickstart-recipes.ts';

/** Bump when the code of a stage changes what it produces (part of the cache key). */
const PIPELINE_VERSION = 4;

/** sha256 over the recipe, the pipeline version and every input file's path and bytes. */
export async function quickstartKey(recipe: QuickstartRecipe, inputs: QuickstartInputs): Promise<string> {
  const h = createHash('sha256');
  const { name: _name, ...shape } = recipe;
  h.update(JSON.stringify({ PIPELINE_VERSION, recipe: shape }));
  // Held-out generated questions (no question set) and a company's own knowledge base make another run.
  if (!inputs.questions) h.update('\0gate:held-out-generated');
  if (!inputs.sample) h.update('\0kb:docs');
  const files = [...(await documentFiles(inputs.docs)), ...(inputs.questions ? [inputs.questions] : [])];
  for (const f of files) {
    h.update(`\0${f.slice(inputs.docsBase.length)}\0`);
    h.update(await fs.readFile(f));
  }
  return h.digest('hex').slice(0, 16);
}

export interface QuickstartState {
  key: string;
  recipe: string;
  finishedAt: string;
  /** Registry version of the pretrained base. */
  baseVersion: string;
  /** The version the quickstart made serving (undefined when SFT did not beat its base). */
  modelVersion?: string;
  seconds: Record<string, number>;
  summary: string;
  /** What it trained on (a later `serve` without TEAMLLM_QUICKSTART_DOCS keeps a company's own documents). */
  inputs?: QuickstartInputs;
}

const stateFile = (home: string) => join(home, 'quickstart', 'state.json');

export async function readQuickstartState(home: string): Promise<QuickstartState | undefined> {
  const file = stateFile(home);
  return existsSync(file) ? (JSON.parse(await fs.readFile(file, 'utf8')) as QuickstartState) : undefined;
}

/**
 * Whether the first-start training should run: not when opted out, not when a model the
 * quickstart did not make is serving, not when this key already finished.
 */
export async function quickstartNeeded(config: Config, key: string): Promise<{ needed: boolean; reason: string; serving?: ModelVersion }> {
  if (config.quickstart === 'off') return { needed: false, reason: 'TEAMLLM_QUICKSTART=off' };
  const serving = await new ModelRegistry(config.home).serving();
  const state = await readQuickstartState(config.home);
  // What the quickstart left serving: its fine-tuned model, or its base when SFT did not beat it.
  const ours = state?.modelVersion ?? state?.baseVersion;
  if (serving && serving.version !== ours) return { needed: false, reason: `model ${serving.version} is serving (not made by the quickstart)`, serving };
  if (state?.key === key) return { needed: false, reason: `the quickstart model for these inputs and this recipe is cached (${state.modelVersion ?? `${state.baseVersion}: SFT did not beat its base`})`, ...(serving ? { serving } : {}) };
  return { needed: true, reason: state ? 'the recipe or the documents changed' : serving ? 'retraining' : 'no model is serving yet' };
}

export async function writeQuickstartState(home: string, state: QuickstartState): Promise<void> {
  await writeJsonAtomic(stateFile(home), state);
}
