/**
 * Reward models on disk, `$TEAMLLM_HOME/reward/<name>/`:
 *
 *   adapter.safetensors, adapter_config.json   the LoRA adapter (src/model/lora), with its base's identity
 *                                              (on an imported chat model: PEFT's adapter_config.json and
 *                                              adapter_model.safetensors, the identity in its metadata)
 *   head.safetensors                           reward_head.weight [C, 1], reward_head.bias [1]
 *   reward_config.json                         format, base (version, folder, fingerprint), how inputs
 *                                              are encoded, held-out metrics, the gate and its reasons
 *
 * `$TEAMLLM_HOME/reward/current.json` names the reward model RLHF uses by default; only a model
 * that passed its gate (better than chance on held-out questions) is made current.
 */
import { promises as fs } from 'node:fs';
import path from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import type { Tensor } from '@tensorflow/tfjs-core';
import { ensureBackend } from '../../model/backend.ts';
import type { GPTConfig } from '../../model/config.ts';
import { exists, readJson, writeDirAtomic, writeJsonAtomic } from '../../model/files.ts';
import type { GPT, Params } from '../../model/gpt.ts';
import { LoraAdapter } from '../../model/lora/adapter.ts';
import { arraysToTensors, loadModelFiles, tensorsToArrays } from '../../model/model-files.ts';
import { ModelRegistry } from '../../model/registry.ts';
import { readSafetensors, writeSafetensors } from '../../model/safetensors.ts';
import type { RatedExample } from '../simulated-users.ts';
import { HEAD_BIAS, HEAD_WEIGHT, rewardBatch, rewardScores } from './model.ts';
import type { RewardModel } from './reward-model.ts';
import { chatRewardInputs, teamllmRewardInputs, type RewardEncoding, type RewardInputs } from './reward-base.ts';
import { loadChatModelVersion } from '../../model/import/chat-manifest.ts';
import type { ChatTokenizer } from '../../model/import/chat-tokenizer.ts';
import type { LlamaModel } from '../../model/import/llama.ts';
import { trainableFromChatModel } from '../../model/lora/imported-base.ts';
import { adapterFromPeft, readPeftAdapter } from '../../model/lora/peft.ts';

export const REWARD_FORMAT = 'teamllm-reward/1';
const NAME = /^[a-zA-Z0-9][\w.-]{0,63}$/;

export interface RewardConfigFile {
  format: string;
  name: string;
  /** The base model the adapter was trained on (the adapter files hold its fingerprint too). */
  base: { version?: string; dir: string; fingerprint: string; config: GPTConfig };
  /** How inputs are encoded: our template (maxTokens, maxContextTokens), or `template: 'chat'`, the imported base's own. */
  encoding: RewardEncoding;
  /** Held-out measures: pairAccuracy, voteAuc (+ their CI bounds and counts), scoreMean, scoreStd... */
  metrics: Record<string, number>;
  gate: { passed: boolean; reasons: string[] };
  data: Record<string, number>;
  taste?: string;
  runDir?: string;
  trainedAt: string;
}

export function rewardRoot(home: string): string {
  return path.join(home, 'reward');
}

export function rewardDir(home: string, name: string): string {
  if (!NAME.test(name) || name === 'current.json') throw new Error(`Not a valid reward model name: "${name}" (letters, digits, . _ -)`);
  return path.join(rewardRoot(home), name);
}

/** Writes a reward model folder atomically (adapter, head, config); `saveAdapter` writes the adapter's files (default teamllm's). */
export async function saveRewardModel(
  dir: string,
  parts: { adapter: LoraAdapter; head: Map<string, Tensor>; config: RewardConfigFile; saveAdapter?: (dir: string, adapter: LoraAdapter) => Promise<void> },
): Promise<void> {
  await writeDirAtomic(dir, async (tmp) => {
    await (parts.saveAdapter ? parts.saveAdapter(tmp, parts.adapter) : parts.adapter.save(tmp));
    await writeSafetensors(path.join(tmp, 'head.safetensors'), tensorsToArrays([HEAD_WEIGHT, HEAD_BIAS].map((n) => [n, parts.head.get(n)!] as [string, Tensor])), { format: REWARD_FORMAT });
    await writeJsonAtomic(path.join(tmp, 'reward_config.json'), parts.config);
  });
}

export async function readRewardConfig(dir: string): Promise<RewardConfigFile> {
  const file = path.join(dir, 'reward_config.json');
  if (!(await exists(file))) throw new Error(`${dir} is not a reward model folder (no reward_config.json)`);
  const config = await readJson<RewardConfigFile>(file);
  if (config.format !== REWARD_FORMAT) throw new Error(`${dir}: reward model format "${config.format}", expected ${REWARD_FORMAT}`);
  return config;
}

export async function listRewardModels(home: string): Promise<(RewardConfigFile & { dir: string; current: boolean })[]> {
  const root = rewardRoot(home);
  if (!(await exists(root))) return [];
  const current = await currentRewardModel(home);
  const out: (RewardConfigFile & { dir: string; current: boolean })[] = [];
  for (const name of (await fs.readdir(root)).sort()) {
    if (!NAME.test(name) || name.includes('.tmp-')) continue;
    try {
      const dir = path.join(root, name);
      out.push({ ...(await readRewardConfig(dir)), dir, current: name === current });
    } catch {
      // not a reward model folder
    }
  }
  return out;
}

/** The name of the reward model in use, if one passed its gate. */
export async function currentRewardModel(home: string): Promise<string | undefined> {
  const file = path.join(rewardRoot(home), 'current.json');
  if (!(await exists(file))) return undefined;
  return (await readJson<{ name: string }>(file)).name;
}

/** Makes `name` the reward model in use. Refuses one whose gate failed. */
export async function setCurrentRewardModel(home: string, name: string): Promise<void> {
  const config = await readRewardConfig(rewardDir(home, name));
  if (!config.gate.passed) throw new Error(`Reward model "${name}" is not better than chance on held-out feedback and cannot be used: ${config.gate.reasons.join('; ')}`);
  await writeJsonAtomic(path.join(rewardRoot(home), 'current.json'), { name, since: new Date().toISOString() });
}

/**
 * Scores answers with a base GPT (adapter merged or hooked) and a head, in batches, without
 * gradients. Shared by the trainer's evaluation and the loaded reward model.
 */
export class RewardScorer {
  constructor(
    readonly gpt: GPT,
    readonly inputs: RewardInputs,
    readonly head: Map<string, Tensor>,
    readonly batchSize = 16,
  ) {}

  encode(ex: RatedExample): number[] {
    return this.inputs.encode(ex);
  }

  /** Scores of already-encoded sequences; `params` defaults to the model's own plus the head. */
  scoreEncoded(sequences: readonly number[][], params?: Params): number[] {
    const p: Params = params ?? new Map([...this.gpt.params, ...this.head]);
    const pad = this.inputs.pad;
    const out: number[] = [];
    for (let i = 0; i < sequences.length; i += this.batchSize) {
      const batch = rewardBatch(sequences.slice(i, i + this.batchSize), pad);
      const s = tf.tidy(() => rewardScores(this.gpt, batch, p));
      out.push(...(s.dataSync() as Float32Array));
      s.dispose();
      batch.x.dispose();
      batch.last.dispose();
    }
    return out;
  }

  score(batch: readonly RatedExample[]): number[] {
    return this.scoreEncoded(batch.map((ex) => this.encode(ex)));
  }
}

export interface LoadRewardOptions {
  /** Load onto this model folder instead of the recorded base (it must be that same base). */
  baseDir?: string;
  baseVersion?: string;
  /** Load one whose gate failed (to inspect it; RLHF must not use it). */
  allowFailedGate?: boolean;
  /**
   * An imported chat model already loaded from the version folder `dir` (the RLHF job's policy):
   * a reward model on that same base reads its engine's matrices instead of loading a copy.
   */
  sharedChat?: { dir: string; model: LlamaModel; tokenizer: ChatTokenizer };
}

/**
 * Loads a reward model (`name`, default the current one) with its own copy of the base model,
 * the adapter merged in (on an imported base: attached, the base frozen as served). Refuses a base whose weights differ from the one it was trained on.
 */
export async function loadRewardModel(home: string, name?: string, options: LoadRewardOptions = {}): Promise<RewardModel> {
  const chosen = name ?? (await currentRewardModel(home));
  if (!chosen) {
    const all = await listRewardModels(home);
    throw new Error(
      all.length
        ? `No reward model is in use: none of ${all.map((r) => `"${r.name}"`).join(', ')} passed its held-out check. Collect more 👍/👎 and run /train reward again.`
        : 'There is no reward model yet: train one with /train reward (teamllm train reward) once users have rated enough answers.',
    );
  }
  const dir = rewardDir(home, chosen);
  const config = await readRewardConfig(dir);
  if (!config.gate.passed && !options.allowFailedGate) {
    throw new Error(`Reward model "${chosen}" did not pass its held-out check and is not used: ${config.gate.reasons.join('; ')}`);
  }
  const onChat = config.encoding.template === 'chat';
  let baseDir = options.baseDir;
  let baseVersion = options.baseVersion ?? (options.baseDir ? undefined : config.base.version);
  if (!baseDir) {
    const registry = new ModelRegistry(home);
    if (config.base.version && (await registry.get(config.base.version))) baseDir = registry.dir(config.base.version);
    else if (!onChat && (await exists(path.join(config.base.dir, 'model.safetensors')))) baseDir = config.base.dir;
    else throw new Error(`Reward model "${chosen}" was trained on base ${config.base.version ?? config.base.dir}, which is no longer there (deleted?). Train a new reward model on a current base.`);
  }
  await ensureBackend();
  const { model, inputs } = onChat ? loadChatBase(baseDir, config.encoding, options.sharedChat) : await loadTeamllmBase(baseDir, config.encoding);
  let adapter: LoraAdapter;
  try {
    adapter = onChat ? adapterFromPeft(readPeftAdapter(dir), model, baseVersion) : await LoraAdapter.load(dir, model, baseVersion);
  } catch (err) {
    model.dispose();
    throw new Error(`Reward model "${chosen}" cannot be used on ${baseVersion ?? baseDir}: ${(err as Error).message}`);
  }
  // On an imported base the matrices stay frozen in their stored dtype: merging would widen every
  // matrix the adapter touches to a float32 tensor, so its low-rank products run beside them instead.
  const hooked = onChat;
  if (hooked) adapter.attach(model, baseVersion);
  else {
    adapter.merge(model);
    adapter.dispose();
  }
  const release = () => {
    if (hooked) {
      LoraAdapter.detach(model);
      adapter.dispose();
    }
    model.dispose();
  };
  const { tensors } = await readSafetensors(path.join(dir, 'head.safetensors'));
  const head = arraysToTensors(tensors);
  const w = head.get(HEAD_WEIGHT);
  if (!w || !head.get(HEAD_BIAS) || w.shape[0] !== model.config.nEmbd) {
    release();
    throw new Error(`${dir}/head.safetensors does not fit the base (needs ${HEAD_WEIGHT} [${model.config.nEmbd}, 1] and ${HEAD_BIAS})`);
  }
  const scorer = new RewardScorer(model, inputs, head);
  let disposed = false;
  return {
    info: { name: chosen, dir, baseVersion: config.base.version ?? baseDir, metrics: config.metrics },
    score: async (batch) => {
      if (disposed) throw new Error(`Reward model "${chosen}" was disposed`);
      return scorer.score(batch);
    },
    dispose: () => {
      if (disposed) return;
      disposed = true;
      for (const t of head.values()) t.dispose();
      release();
    },
  };
}

async function loadTeamllmBase(dir: string, encoding: RewardEncoding): Promise<{ model: GPT; inputs: RewardInputs }> {
  const { model, tokenizer } = await loadModelFiles(dir);
  return { model, inputs: teamllmRewardInputs(tokenizer, encoding) };
}

/** An imported chat model's version as the model the reward adapter was trained on (its matrices frozen as served, not copied), and its template's inputs. */
function loadChatBase(dir: string, encoding: RewardEncoding, shared?: LoadRewardOptions['sharedChat']): { model: GPT; inputs: RewardInputs } {
  // Nothing writes into a frozen matrix, so the policy and the reward model can read the same ones.
  const chat = shared && path.resolve(shared.dir) === path.resolve(dir) ? shared : loadChatModelVersion(dir);
  return { model: trainableFromChatModel(chat.model, { frozen: true }), inputs: chatRewardInputs(chat.tokenizer, encoding.maxTokens) };
}
