/**
 * Tiny Llama-family chat models with random weights, the real tensor names and a small byte-level
 * BPE vocabulary, written from the same numbers as a Hugging Face folder (config.json,
 * model.safetensors or shards, tokenizer.json, tokenizer_config.json with a chat template,
 * generation_config.json) and as a GGUF file written by src/model/import/chat-gguf.ts (the writer
 * `teamllm model export` uses: llama arch q/k rows permuted as convert_hf_to_gguf.py does,
 * qwen2/qwen3 as they are, llama3 RoPE scaling as a rope_freqs tensor). No pretrained weights
 * exist on this machine.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { encodeSafetensors, type NamedArray } from '../../../src/model/safetensors.ts';
import { expectedLlamaTensors, llamaConfigFromHf, type LlamaConfig } from '../../../src/model/import/llama-config.ts';
import { byteLevelAlphabet, byteLevelBpeTokenizerJson, BPE_PRE_TOKENIZERS } from '../../../src/model/import/chat-tokenizer.ts';
import { encodeChatGguf as encodeChatGgufFile, type GgufVocabulary } from '../../../src/model/import/chat-gguf.ts';
import type { GgmlTypeName } from '../../../src/model/import/gguf.ts';
import { roundTo16 } from '../../../src/model/import/dtypes.ts';
import { rng } from './tiny-bert.ts';

export type TinyArch = 'llama' | 'mistral' | 'qwen2' | 'qwen3';

export const CHATML_TEMPLATE =
  "{%- for message in messages %}{{- '<|im_start|>' + message.role + '\\n' + message.content + '<|im_end|>' + '\\n' }}{%- endfor %}" +
  "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}";
export const LLAMA3_TEMPLATE =
  "{{- bos_token }}{%- for message in messages %}{{- '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n' + message['content'] | trim + '<|eot_id|>' }}{%- endfor %}" +
  "{%- if add_generation_prompt %}{{- '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}{%- endif %}";

const CORPUS =
  'How many days of annual leave do I get? The handbook says every employee gets twenty days of annual leave, ' +
  'and the manager approves the travel expense report. What is the sick pay policy when I work from home? ' +
  'Employees who work remote are paid the same. The new hire gets a laptop in the first week.';

export interface TinyVocab {
  tokens: string[];
  types: number[];
  merges: string[];
  pre: 'qwen2' | 'llama-bpe';
  specials: Record<string, number>;
}

/** A byte-level BPE vocabulary: the 256 bytes, merges learned greedily on a short corpus, then the special tokens. */
export function tinyVocab(style: 'qwen' | 'llama3', nMerges = 60): TinyVocab {
  const alphabet = byteLevelAlphabet();
  const tokens = [...alphabet];
  const words = (CORPUS.match(/ ?[A-Za-z]+| ?[^\sA-Za-z]+|\s+/g) ?? []).map((w) => [...Buffer.from(w, 'utf8')].map((b) => alphabet[b]!));
  const merges: string[] = [];
  for (let m = 0; m < nMerges; m++) {
    const counts = new Map<string, number>();
    for (const w of words) for (let i = 0; i + 1 < w.length; i++) counts.set(`${w[i]} ${w[i + 1]}`, (counts.get(`${w[i]} ${w[i + 1]}`) ?? 0) + 1);
    let best = '';
    let bestCount = 1;
    for (const [pair, n] of counts) if (n > bestCount) [best, bestCount] = [pair, n];
    if (!best) break;
    const [a, b] = best.split(' ') as [string, string];
    merges.push(best);
    tokens.push(a + b);
    for (const w of words) {
      for (let i = 0; i + 1 < w.length; i++) if (w[i] === a && w[i + 1] === b) w.splice(i, 2, a + b);
    }
  }
  const specialNames = style === 'qwen' ? ['<|endoftext|>', '<|im_start|>', '<|im_end|>'] : ['<|begin_of_text|>', '<|end_of_text|>', '<|start_header_id|>', '<|end_header_id|>', '<|eot_id|>'];
  const types = tokens.map(() => 1);
  const specials: Record<string, number> = {};
  for (const s of specialNames) {
    specials[s] = tokens.length;
    tokens.push(s);
    types.push(3);
  }
  return { tokens, types, merges, pre: style === 'qwen' ? 'qwen2' : 'llama-bpe', specials };
}

export interface TinyChatModel {
  arch: TinyArch;
  /** config.json as Hugging Face writes it. */
  hfConfig: Record<string, unknown>;
  config: LlamaConfig;
  weights: Map<string, Float32Array>;
  vocab: TinyVocab;
  chatTemplate: string;
  eosIds: number[];
  bosToken?: string;
  eosToken: string;
}

/** The config.json of each tiny shape (the real fields of each family; older and newer RoPE spellings both used). */
function hfConfigFor(arch: TinyArch, vocabSize: number): Record<string, unknown> {
  const common = { hidden_size: 64, intermediate_size: 96, num_hidden_layers: 2, num_attention_heads: 4, num_key_value_heads: 2, hidden_act: 'silu', max_position_embeddings: 128, vocab_size: vocabSize, torch_dtype: 'float32', attention_dropout: 0 };
  switch (arch) {
    case 'llama':
      // Llama 3.1's layout: untied head, llama3 RoPE scaling (original length shrunk to 64 so that all three bands occur within 16-dim heads).
      return { architectures: ['LlamaForCausalLM'], model_type: 'llama', ...common, rms_norm_eps: 1e-5, rope_theta: 10000, rope_scaling: { rope_type: 'llama3', factor: 8, low_freq_factor: 1, high_freq_factor: 4, original_max_position_embeddings: 64 }, attention_bias: false, mlp_bias: false, tie_word_embeddings: false, bos_token_id: vocabSize - 5, eos_token_id: [vocabSize - 4, vocabSize - 1] };
    case 'mistral':
      // head_dim 32 with hidden 64 and 4 heads (q is 128 wide), one key/value head.
      return { architectures: ['MistralForCausalLM'], model_type: 'mistral', ...common, num_key_value_heads: 1, head_dim: 32, rms_norm_eps: 1e-5, rope_theta: 1000000, sliding_window: null, tie_word_embeddings: false };
    case 'qwen2':
      return { architectures: ['Qwen2ForCausalLM'], model_type: 'qwen2', ...common, rms_norm_eps: 1e-6, rope_theta: 1000000, rope_scaling: null, use_sliding_window: false, sliding_window: 4096, tie_word_embeddings: true };
    case 'qwen3':
      // transformers 5 spelling: rope_parameters; explicit head_dim 32 ≠ 64/4.
      return { architectures: ['Qwen3ForCausalLM'], model_type: 'qwen3', ...common, head_dim: 32, rms_norm_eps: 1e-6, rope_parameters: { rope_type: 'default', rope_theta: 1000000 }, attention_bias: false, use_sliding_window: false, tie_word_embeddings: true };
  }
}

export function tinyChatModel(arch: TinyArch, seed = 1): TinyChatModel {
  const vocab = tinyVocab(arch === 'qwen2' || arch === 'qwen3' ? 'qwen' : 'llama3');
  const hfConfig = hfConfigFor(arch, vocab.tokens.length);
  const config = llamaConfigFromHf(hfConfig);
  const normal = rng(seed);
  const weights = new Map<string, Float32Array>();
  for (const [name, shape] of expectedLlamaTensors(config)) {
    const size = shape.reduce((a, b) => a * b, 1);
    const values = new Float32Array(size);
    const isNorm = /norm\.weight$/.test(name);
    const fanIn = shape.length === 2 ? shape[1]! : 1;
    for (let i = 0; i < size; i++) {
      const z = normal();
      values[i] = isNorm ? 1 + 0.1 * z : name.endsWith('bias') ? 0.2 * z : name.includes('embed_tokens') ? z : name === 'lm_head.weight' ? (2 * z) / Math.sqrt(fanIn) : z / Math.sqrt(fanIn);
    }
    weights.set(name, values);
  }
  const sp = vocab.specials;
  const qwen = arch === 'qwen2' || arch === 'qwen3';
  return {
    arch,
    hfConfig,
    config,
    weights,
    vocab,
    chatTemplate: qwen ? CHATML_TEMPLATE : LLAMA3_TEMPLATE,
    eosIds: qwen ? [sp['<|im_end|>']!, sp['<|endoftext|>']!] : [sp['<|end_of_text|>']!, sp['<|eot_id|>']!],
    ...(qwen ? {} : { bosToken: '<|begin_of_text|>' }),
    eosToken: qwen ? '<|im_end|>' : '<|eot_id|>',
  };
}

/** The same numbers rounded through F16 or BF16 (what a file of that dtype holds). */
export function roundedChat(model: TinyChatModel, dtype: 'F16' | 'BF16'): TinyChatModel {
  return { ...model, weights: new Map([...model.weights].map(([n, v]) => [n, roundTo16(v, dtype)])) };
}

/** Writes the Hugging Face folder: weights stored as `dtype`, in one file or two shards with an index. */
export function writeHfChatFolder(dir: string, model: TinyChatModel, dtype: 'F32' | 'F16' | 'BF16' = 'F32', extra: { sharded?: boolean; licence?: string } = {}): void {
  mkdirSync(dir, { recursive: true });
  writeFileSync(path.join(dir, 'config.json'), JSON.stringify(model.hfConfig, null, 2));
  const shapes = expectedLlamaTensors(model.config);
  const all = [...model.weights].map(([name, data]): [string, NamedArray] => [name, { dtype: 'F32', shape: shapes.get(name)!, data, ...(dtype !== 'F32' ? { stored: dtype } : {}) }]);
  if (extra.sharded) {
    const half = Math.ceil(all.length / 2);
    const parts = [all.slice(0, half), all.slice(half)];
    const weightMap: Record<string, string> = {};
    parts.forEach((part, i) => {
      const file = `model-0000${i + 1}-of-00002.safetensors`;
      writeFileSync(path.join(dir, file), encodeSafetensors(new Map(part), { format: 'pt' }));
      for (const [name] of part) weightMap[name] = file;
    });
    writeFileSync(path.join(dir, 'model.safetensors.index.json'), JSON.stringify({ metadata: {}, weight_map: weightMap }, null, 2));
  } else writeFileSync(path.join(dir, 'model.safetensors'), encodeSafetensors(new Map(all), { format: 'pt' }));
  const v = model.vocab;
  writeFileSync(path.join(dir, 'tokenizer.json'), JSON.stringify(byteLevelBpeTokenizerJson(v.tokens, v.types, v.merges, BPE_PRE_TOKENIZERS[v.pre]!)));
  writeFileSync(
    path.join(dir, 'tokenizer_config.json'),
    JSON.stringify({ chat_template: model.chatTemplate, eos_token: model.eosToken, ...(model.bosToken ? { bos_token: model.bosToken } : { bos_token: null }), model_max_length: model.config.maxPositions }),
  );
  writeFileSync(path.join(dir, 'generation_config.json'), JSON.stringify({ eos_token_id: model.eosIds, do_sample: false }));
  if (extra.licence) writeFileSync(path.join(dir, 'LICENSE'), `${extra.licence}\n\nTiny test model.\n`);
}

/** The GGUF vocabulary of the tiny model as llama.cpp's converter writes these families' (Llama 3: add BOS, eot; Qwen: BOS <|endoftext|>, not added). */
export function tinyGgufVocabulary(model: TinyChatModel): GgufVocabulary {
  const v = model.vocab;
  const sp = v.specials;
  return {
    tokens: v.tokens,
    types: v.types,
    merges: v.merges,
    pre: v.pre,
    eosId: sp[model.eosToken]!,
    ...(model.bosToken ? { bosId: sp[model.bosToken]!, addBos: true } : { bosId: sp['<|endoftext|>']!, addBos: false }),
    ...(model.arch === 'llama' ? { eotId: sp['<|eot_id|>']! } : {}),
    chatTemplate: model.chatTemplate,
  };
}

/** The GGUF file, written by src's chat GGUF writer (1-D tensors F32, matrices `dtype`; llama arch: q/k rows permuted). */
export function encodeChatGguf(model: TinyChatModel, dtype: GgmlTypeName = 'F32'): Uint8Array {
  return encodeChatGgufFile({ config: model.config, weights: model.weights, vocabulary: tinyGgufVocabulary(model), name: `tiny-${model.arch}` }, dtype);
}

export function writeChatGguf(file: string, model: TinyChatModel, dtype: GgmlTypeName = 'F32'): void {
  mkdirSync(path.dirname(file), { recursive: true });
  writeFileSync(file, encodeChatGguf(model, dtype));
}
