/**
 * `teamllm model export` of imported chat models (src/model/import/chat-export.ts), on tiny
 * random-weight models registered as versions:
 *   hf    the folder imports back with bit-identical logits (F32 and BF16 sources; sharded and
 *         not; from a Hugging Face folder and from a GGUF file), the same config and tokenizer;
 *   gguf  F16, BF16 and Q8_0 files of Llama, Qwen2 and Qwen3 load in llama.cpp (node-llama-cpp
 *         3.21.1), which tokenizes as our tokenizer does and continues a prompt with the same 32
 *         greedy tokens as teamllm (Q8_0: llama-parity.test.ts's bound on the logits, greedy
 *         logged, as there); the file re-imports with our reader to the same config, tokenizer
 *         ids, end-of-turn ids and template;
 *   and what is refused: a non-empty target, peft, Q8_0 in a folder, a config.json that cannot
 *   state the model.
 */
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Llama } from 'node-llama-cpp';
import { exportChatModel } from '../../../src/model/import/chat-export.ts';
import { loadChatModelVersion } from '../../../src/model/import/chat-manifest.ts';
import { inspectImport } from '../../../src/model/import/inspect-import.ts';
import { loadGgufChatModel, loadHfChatModel, readChatWeights, type LoadedChatModel } from '../../../src/model/import/llama-checkpoint.ts';
import { ropeInverseFrequencies } from '../../../src/model/import/llama-config.ts';
import { GgufFile } from '../../../src/model/import/gguf.ts';
import { dequantize } from '../../../src/model/import/weights.ts';
import { ModelRegistry } from '../../../src/model/registry.ts';
import { compareLogits, llamaCppRun, promptIds, startLlamaCpp } from './llama-cpp-reference.ts';
import { roundedChat, tinyChatModel, writeChatGguf, writeHfChatFolder, type TinyArch, type TinyChatModel } from './tiny-llama.ts';

let dir: string;
let llama: Llama;
let registry: ModelRegistry;

beforeAll(async () => {
  dir = mkdtempSync(path.join(tmpdir(), 'teamllm-chat-export-'));
  registry = new ModelRegistry(path.join(dir, 'home'));
  llama = await startLlamaCpp();
});

afterAll(async () => {
  await llama?.dispose();
  rmSync(dir, { recursive: true, force: true });
});

const TEXTS = ['How many days of annual leave do I get?', "The employee's  manager\napproves it: 20 days, 2024!", '年假 10 天', 'typed <|im_end|> stays text'];
const MESSAGES = [
  { role: 'system' as const, content: 'Answer from the passages.' },
  { role: 'user' as const, content: 'How many days of annual leave do I get?' },
];

/** Imports a folder or GGUF file as the next version; its folder. */
async function version(location: string): Promise<string> {
  const inspected = inspectImport(location);
  if (inspected.kind !== 'chat') throw new Error('not a chat model');
  const v = await registry.registerChatModel(inspected.description, { name: path.basename(location) });
  return registry.dir(v.version);
}

async function hfVersion(name: string, model: TinyChatModel, dtype: 'F32' | 'F16' | 'BF16', extra: { sharded?: boolean; licence?: string } = {}): Promise<string> {
  const folder = path.join(dir, 'src', name);
  writeHfChatFolder(folder, model, dtype, extra);
  return version(folder);
}

async function ggufVersion(name: string, model: TinyChatModel, dtype: 'F32' | 'F16' | 'BF16' | 'Q8_0'): Promise<string> {
  const file = path.join(dir, 'src', `${name}.gguf`);
  writeChatGguf(file, model, dtype);
  return version(file);
}

function sameLogits(a: LoadedChatModel, b: LoadedChatModel, ids: number[]): void {
  const x = a.model.forward(ids);
  const y = b.model.forward(ids);
  expect(y.length).toBe(x.length);
  let differing = 0;
  for (let i = 0; i < x.length; i++) if (!Object.is(x[i], y[i])) differing++;
  expect(differing, 'logits differing bit for bit').toBe(0);
}

function sameTokenizer(a: LoadedChatModel, b: LoadedChatModel): void {
  for (const t of TEXTS) expect(b.tokenizer.encodeText(t), t).toEqual(a.tokenizer.encodeText(t));
  expect([...b.tokenizer.eosIds].sort()).toEqual([...a.tokenizer.eosIds].sort());
  expect(b.tokenizer.chatTemplate).toBe(a.tokenizer.chatTemplate);
  expect(b.tokenizer.encodeChat(MESSAGES)).toEqual(a.tokenizer.encodeChat(MESSAGES));
}

describe('hf export', () => {
  const cases: { label: string; make: () => Promise<string>; dtype: string; shards?: number }[] = [
    { label: 'Llama (llama3 RoPE), F32 folder, written in 3 shards', make: () => hfVersion('llama-f32', tinyChatModel('llama', 5), 'F32', { licence: 'Llama 3.1 Community License' }), dtype: 'f32', shards: 3 },
    { label: 'Qwen2, BF16 sharded folder', make: () => hfVersion('qwen2-bf16', roundedChat(tinyChatModel('qwen2', 6), 'BF16'), 'BF16', { sharded: true }), dtype: 'bf16' },
    { label: 'Qwen3, F32 GGUF file', make: () => ggufVersion('qwen3-f32', tinyChatModel('qwen3', 7), 'F32'), dtype: 'f32' },
    // Its norms and biases are F32 values BF16 cannot hold: they stay F32 in the folder.
    { label: 'Qwen2, BF16 GGUF file with F32 norms', make: () => ggufVersion('qwen2-bf16', tinyChatModel('qwen2', 8), 'BF16'), dtype: 'bf16' },
  ];
  for (const { label, make, dtype, shards } of cases) {
    it(`${label}: imports back with bit-identical logits, the same config and tokenizer`, { timeout: 60_000 }, async () => {
      const from = await make();
      const target = path.join(dir, 'out', `hf-${path.basename(from)}`);
      // One tensor of the tiny models is ~40 KB: a 100 KB limit makes several shards.
      const result = await exportChatModel(from, 'hf', target, shards ? { maxShardBytes: 100_000 } : {});
      expect(result.dtype).toBe(dtype);
      const files = readdirSync(target).sort();
      expect(files).toEqual(expect.arrayContaining(['README.md', 'config.json', 'generation_config.json', 'tokenizer.json', 'tokenizer_config.json']));
      const weightFiles = files.filter((f) => f.endsWith('.safetensors'));
      if (shards) {
        expect(weightFiles.length).toBeGreaterThanOrEqual(shards);
        const index = JSON.parse(readFileSync(path.join(target, 'model.safetensors.index.json'), 'utf8')) as { weight_map: Record<string, string>; metadata: { total_size: number } };
        expect(new Set(Object.values(index.weight_map))).toEqual(new Set(weightFiles));
      }
      const config = JSON.parse(readFileSync(path.join(target, 'config.json'), 'utf8')) as Record<string, unknown>;
      expect(config.torch_dtype).toBe({ f32: 'float32', bf16: 'bfloat16' }[dtype]);
      expect(JSON.parse(readFileSync(path.join(target, 'tokenizer_config.json'), 'utf8')).chat_template).toBeTypeOf('string');
      const original = loadChatModelVersion(from);
      const back = loadHfChatModel(target);
      expect(back.description.config).toEqual(original.description.config);
      expect(back.description.dtype).toBe(original.description.dtype);
      expect(back.description.licence).toBe(original.description.licence);
      sameLogits(original, back, promptIds(original.description.config.vocabSize, 3, 40));
      sameTokenizer(original, back);
    });
  }

  it('a Q8_0 GGUF version: f32 by default, exactly the dequantized blocks', { timeout: 30_000 }, async () => {
    const from = await ggufVersion('llama-q8', tinyChatModel('llama', 9), 'Q8_0');
    // llama3 RoPE came as llama.cpp's rope_freqs table: config.json cannot state it.
    await expect(exportChatModel(from, 'hf', path.join(dir, 'out', 'q8-hf'))).rejects.toThrow(/hf export: its RoPE scaling came as llama\.cpp's rope_freqs table.*export gguf instead/);
    const mistral = await ggufVersion('mistral-q8', tinyChatModel('mistral', 9), 'Q8_0');
    const target = path.join(dir, 'out', 'q8-mistral-hf');
    expect((await exportChatModel(mistral, 'hf', target)).dtype).toBe('f32');
    const source = readChatWeights(path.join(mistral, 'mistral-q8.gguf'));
    const back = readChatWeights(target);
    for (const [name, w] of source.weights) {
      const a = w instanceof Float32Array ? w : dequantize(w);
      const b = back.weights.get(name)!;
      expect(Buffer.from((b instanceof Float32Array ? b : dequantize(b)).buffer).equals(Buffer.from(a.buffer, a.byteOffset, a.byteLength)), name).toBe(true);
    }
  });
});

const GREEDY = 32;

describe('gguf export, checked in llama.cpp', () => {
  const cases: { arch: TinyArch; source: 'F32' | 'F16' | 'BF16'; dtype: 'f16' | 'bf16' | 'q8_0' }[] = [
    { arch: 'llama', source: 'F16', dtype: 'f16' },
    { arch: 'qwen2', source: 'BF16', dtype: 'bf16' },
    { arch: 'qwen3', source: 'F32', dtype: 'f16' },
    { arch: 'llama', source: 'BF16', dtype: 'bf16' },
    { arch: 'llama', source: 'F32', dtype: 'q8_0' },
    { arch: 'qwen2', source: 'F32', dtype: 'q8_0' },
    { arch: 'qwen3', source: 'BF16', dtype: 'q8_0' },
  ];
  for (const { arch, source, dtype } of cases) {
    it(`${arch} (${source} folder) as ${dtype.toUpperCase()}: llama.cpp loads it, tokenizes and continues as teamllm; it re-imports to the same model`, { timeout: 60_000 }, async () => {
      const base = tinyChatModel(arch, 11);
      const model = source === 'F32' ? base : roundedChat(base, source);
      const from = await hfVersion(`${arch}-${source}-for-${dtype}`, model, source, { licence: 'Apache License 2.0' });
      const target = path.join(dir, 'out', `gguf-${arch}-${source}-${dtype}`);
      const result = await exportChatModel(from, 'gguf', target, { dtype, name: `tiny-${arch}` });
      const file = path.join(target, `tiny-${arch}-${dtype.toUpperCase()}.gguf`);
      expect(result.files.map((f) => f.file)).toEqual(['LICENSE', 'README.md', path.basename(file)].sort());
      const g = GgufFile.open(file);
      expect(g.get('general.license')).toBe('Apache License 2.0');
      expect(g.get('general.file_type')).toBe({ f16: 1, bf16: 32, q8_0: 7 }[dtype]);
      expect(g.tensors.get('blk.0.attn_q.weight')!.type).toBe(dtype.toUpperCase());
      expect(g.tensors.get('blk.0.attn_norm.weight')!.type).toBe('F32');
      g.close();

      const original = loadChatModelVersion(from);
      const back = loadGgufChatModel(file);
      // Re-imported: the same config (Mistral is llama.cpp's llama; llama3 RoPE comes back as its per-frequency table), tokenizer and template.
      // (GGUF holds rms_norm_eps and rope_theta as float32.)
      const { ropeScaling: _a, ...config } = back.description.config;
      const { ropeScaling: _b, ...want } = original.description.config;
      expect(config).toEqual({ ...want, architecture: arch === 'qwen2' ? 'Qwen2ForCausalLM' : arch === 'qwen3' ? 'Qwen3ForCausalLM' : 'LlamaForCausalLM', rmsNormEps: Math.fround(want.rmsNormEps), ropeTheta: Math.fround(want.ropeTheta) });
      expect([...ropeInverseFrequencies(back.description.config)].map((f) => Math.fround(f))).toEqual([...ropeInverseFrequencies(original.description.config)].map((f) => Math.fround(f)));
      sameTokenizer(original, back);

      const V = base.config.vocabSize;
      const ids = promptIds(V, arch.length * 7 + dtype.length);
      const ref = await llamaCppRun(llama, file, ids, V, TEXTS, GREEDY);
      for (const [i, t] of TEXTS.entries()) expect(ref.tokenized[i]!.filter((id) => !back.tokenizer.specialIds.has(id)), t).toEqual(original.tokenizer.encodeText(t));
      // teamllm as it serves the version (an F32 one exported as F16 keeps its F32 weights), or for Q8_0 the file's blocks as our reader holds them.
      const ours = dtype === 'q8_0' ? back : original;
      const greedy = ours.model.generate(ids, { maxTokens: GREEDY });
      const { maxRel } = compareLogits(ours.model.forward(ids), ref.logits, V);
      const same = greedy.findIndex((id, i) => id !== ref.greedy[i]);
      console.log(`export ${arch} ${source}→${dtype}: max relative Δlogit ${maxRel.toExponential(2)}; greedy ${same < 0 ? 'all 32 identical' : `first difference at ${same}`}`);
      if (dtype === 'q8_0') expect(maxRel).toBeLessThan(5e-2);
      else {
        expect(maxRel).toBeLessThan(dtype === 'f16' ? 2e-3 : 1.5e-2);
        expect(greedy).toEqual(ref.greedy);
      }
    });
  }
});

describe('export refuses', () => {
  it('a non-empty target, peft, Q8_0 in a folder; nothing is written', { timeout: 30_000 }, async () => {
    const from = await hfVersion('refusals', tinyChatModel('qwen2', 12), 'F32');
    const busy = path.join(dir, 'out', 'busy');
    mkdirSync(busy, { recursive: true });
    writeFileSync(path.join(busy, 'notes.txt'), 'mine');
    await expect(exportChatModel(from, 'gguf', busy)).rejects.toThrow(/busy is not empty \(1 entry\): export writes into a new or empty folder/);
    expect(readdirSync(busy)).toEqual(['notes.txt']);
    await expect(exportChatModel(from, 'peft', path.join(dir, 'out', 'peft'))).rejects.toThrow('--format peft writes a LoRA adapter version');
    await expect(exportChatModel(from, 'hf', path.join(dir, 'out', 'q8-folder'), { dtype: 'q8_0' })).rejects.toThrow(/a Hugging Face folder holds f32, f16 or bf16 weights \(Q8_0 is a GGUF type/);
    expect(readdirSync(path.join(dir, 'out')).filter((f) => ['peft', 'q8-folder'].includes(f))).toEqual([]);
  });
});
