/**
 * An imported chat model's version folder (`<home>/models/vN`): the files as they were imported (a
 * Hugging Face folder's, or one GGUF file) and `chat-model.json`, this manifest, which says how to
 * read them back.
 *
 * A LoRA adapter on an imported model is a version of its own: PEFT's two files and a manifest
 * whose `adapter.base` names the base version (a sibling folder). Loading it loads the base and
 * merges the adapter into its weights (src/model/lora/imported-base.ts).
 */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { inspectGgufChatModel, inspectHfChatModel, loadGgufChatModel, loadHfChatModel, type ChatDtype, type ChatModelDescription, type LoadedChatModel } from './llama-checkpoint.ts';
import type { ChatTokenizer } from './chat-tokenizer.ts';
import { readPeftAdapter } from '../lora/peft.ts';
import { mergeLoraIntoChatModel } from '../lora/imported-base.ts';

export const CHAT_MANIFEST = 'chat-model.json';
export const CHAT_MANIFEST_FORMAT = 'teamllm-chat-model/1';

export interface ChatManifest {
  format: string;
  /** 'hf': the folder's files as they were; 'gguf': the one file named `file`. */
  from: 'hf' | 'gguf';
  file?: string;
  architecture: string;
  dtype: string;
  numParameters: number;
  licence: string;
  origin: string;
  eosIds: number[];
  hasChatTemplate: boolean;
  /** The precision the weights are held in when served (`teamllm model import --dtype`); absent: the file's own. */
  servingDtype?: ChatDtype;
  /** A LoRA adapter version: PEFT's files in this folder, served merged into the version `base`. */
  adapter?: { base: string };
}

export function readChatManifest(dir: string): ChatManifest {
  const file = path.join(dir, CHAT_MANIFEST);
  const manifest = JSON.parse(readFileSync(file, 'utf8')) as ChatManifest;
  if (manifest.format !== CHAT_MANIFEST_FORMAT) throw new Error(`${file}: unknown chat model format "${manifest.format}"`);
  return manifest;
}

/** Loads the chat model of a version folder (its files were verified by the registry first). */
export function loadChatModelVersion(dir: string): LoadedChatModel & { manifest: ChatManifest } {
  const manifest = readChatManifest(dir);
  if (manifest.adapter) {
    const base = loadChatModelVersion(adapterBaseDir(dir, manifest));
    return { ...base, model: mergeLoraIntoChatModel(base.model, readPeftAdapter(dir)), manifest };
  }
  const options = manifest.servingDtype ? { dtype: manifest.servingDtype } : {};
  const loaded = manifest.from === 'gguf' ? loadGgufChatModel(path.join(dir, manifest.file ?? 'model.gguf'), options) : loadHfChatModel(dir, options);
  return { ...loaded, manifest };
}

/**
 * A version folder's description and tokenizer, without its weights: what the main thread needs
 * while a worker thread holds the model (worker-chat-model.ts).
 */
export function inspectChatModelVersion(dir: string): { description: ChatModelDescription; tokenizer: ChatTokenizer; manifest: ChatManifest } {
  const manifest = readChatManifest(dir);
  if (manifest.adapter) return { ...inspectChatModelVersion(adapterBaseDir(dir, manifest)), manifest };
  if (manifest.from === 'gguf') {
    const { gguf, tokenizer, ...description } = inspectGgufChatModel(path.join(dir, manifest.file ?? 'model.gguf'));
    gguf.close();
    return { description, tokenizer, manifest };
  }
  const { tensors: _tensors, tokenizer, ...description } = inspectHfChatModel(dir);
  return { description, tokenizer, manifest };
}

/** The base version's folder of an adapter version (versions are siblings); an adapter on an adapter is refused. */
export function adapterBaseDir(dir: string, manifest: ChatManifest): string {
  const base = path.join(path.dirname(path.resolve(dir)), manifest.adapter!.base);
  if (readChatManifest(base).adapter) throw new Error(`${dir}: its base ${manifest.adapter!.base} is itself an adapter; an adapter goes on an imported model`);
  return base;
}
