/**
 * LoRA SFT of an imported chat model (a tiny random-weight Qwen3 registered as `teamllm model
 * import` does): examples in its own chat template with the loss on the assistant's tokens and
 * the end-of-turn token only; a synthetic task lowers the held-out loss; a run stopped and resumed
 * ends with the adapter of an uninterrupted one; the adapter (PEFT's folder) registered over its
 * base serves as the base with the adapter merged, with the trainable model's logits; SFT on that
 * adapter version registers one adapter over the imported model.
 */
import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { tf, useBackend } from '../model/helpers.ts';
import { decodeSafetensors } from '../../src/model/safetensors.ts';
import { ModelRegistry } from '../../src/model/registry.ts';
import { inspectHfChatModel } from '../../src/model/import/llama-checkpoint.ts';
import { loadChatModelVersion } from '../../src/model/import/chat-manifest.ts';
import { adapterFromPeft, readPeftAdapter } from '../../src/model/lora/peft.ts';
import { trainableFromChatModel } from '../../src/model/lora/imported-base.ts';
import { sft, type SftOptions } from '../../src/training/sft/train.ts';
import { encodeChatSftExample } from '../../src/training/sft/chat-data.ts';
import type { SftExample } from '../../src/training/sft/data.ts';
import { tinyChatModel, writeHfChatFolder } from '../model/import/tiny-llama.ts';
import { runSftJob } from '../../src/training/sft/pipeline.ts';
import { stageServices } from '../../src/training/jobs/stage-services.ts';
import { HANDBOOK_EN } from './helpers.ts';

const tmpRoot = await fs.mkdtemp(path.join(os.tmpdir(), 'teamllm-chat-sft-'));
afterAll(() => fs.rm(tmpRoot, { recursive: true, force: true }));

await useBackend('wasm');
const home = path.join(tmpRoot, 'home');
writeHfChatFolder(path.join(tmpRoot, 'qwen3'), tinyChatModel('qwen3', 5));
const registry = new ModelRegistry(home);
await registry.registerChatModel(inspectHfChatModel(path.join(tmpRoot, 'qwen3')));
const baseDir = registry.dir('v1');

// A synthetic task: the topic of the question decides the answer.
const TOPICS = [
  ['leave', 'Twenty days of annual leave.'],
  ['laptop', 'The new hire gets a laptop.'],
  ['expense', 'The manager approves it.'],
] as const;
const examples: SftExample[] = Array.from({ length: 48 }, (_, i) => {
  const [topic, answer] = TOPICS[i % 3]!;
  return { messages: [{ role: 'user', content: `Question ${i + 1} about ${topic}?` }, { role: 'assistant', content: answer }] };
});

const common = (runDir: string): SftOptions => ({
  runDir,
  base: baseDir,
  baseVersion: 'v1',
  examples,
  lora: { rank: 4, alpha: 8, dropout: 0.05, targets: 'all' },
  batchSize: 4,
  maxIters: 24,
  learningRate: 2e-2,
  minLearningRate: 2e-3,
  warmupIters: 2,
  evalInterval: 8,
  checkpointInterval: 5,
  chartInterval: 100,
  valFraction: 0.25,
  seed: 3,
});

async function adapterTensors(dir: string): Promise<Record<string, number[]>> {
  const { tensors } = decodeSafetensors(await fs.readFile(path.join(dir, 'adapter_model.safetensors')));
  return Object.fromEntries([...tensors].map(([n, a]) => [n, Array.from(a.data)]));
}

describe('SFT of an imported chat model', () => {
  it("encodes in the model's chat template, the loss on the answer and its end-of-turn token only", () => {
    const { tokenizer } = loadChatModelVersion(baseDir);
    const e = encodeChatSftExample(tokenizer, examples[0]!, { maxTokens: 512 })!;
    // The ids are the served prompt's, then the answer.
    const prompt = tokenizer.encodeChat([examples[0]!.messages[0]!], { addGenerationPrompt: true });
    expect(Array.from(e.ids.slice(0, prompt.length))).toEqual(prompt);
    const counted = Array.from(e.targets).filter((t) => t >= 0);
    const imEnd = tokenizer.idOf('<|im_end|>')!;
    expect(counted).toEqual([...tokenizer.encodeText('Twenty days of annual leave.'), imEnd]);
    expect(e.assistantTokens).toBe(counted.length);
    // With passages: the answerer's system message and numbered passages come first.
    const withContext = encodeChatSftExample(tokenizer, { ...examples[0]!, context: [{ source: 'hr.md', title: 'Leave', text: 'Employees get twenty days.' }] }, { maxTokens: 512 })!;
    const text = tokenizer.decode(Array.from(withContext.ids), { skipSpecial: false });
    expect(text).toMatch(/^<\|im_start\|>system\nYou are the company's internal assistant\..*<\|im_start\|>user\nPassages:\n\n\[1\] Leave \(hr\.md\)\nEmployees get twenty days\.\n\nQuestion: Question 1 about leave\?<\|im_end\|>/s);
    expect(encodeChatSftExample(tokenizer, examples[0]!, { maxTokens: 10 })).toBeUndefined();
  });

  it('lowers the held-out loss; stopped and resumed == never interrupted; served merged == trained unmerged', { timeout: 300_000 }, async () => {
    const whole = await sft(common(path.join(tmpRoot, 'run-whole')));
    expect(whole.status).toBe('completed');
    expect(whole.examples).toMatchObject({ train: 36, val: 12, dropped: 0 });
    expect(whole.modelDir).toBeUndefined();
    expect(whole.lora.targets).toEqual(['q', 'k', 'v', 'attn_out', 'mlp_gate', 'mlp_in', 'mlp_out']);
    expect(whole.valLoss).toBeLessThan(0.5 * whole.baseValLoss);

    const runDir = path.join(tmpRoot, 'run-split');
    const controller = new AbortController();
    const first = await sft(common(runDir), { signal: controller.signal, onProgress: (e) => e.phase === 'train' && e.step === 7 && controller.abort() });
    expect(first.status).toBe('aborted');
    const second = await sft({ ...common(runDir), examples: [] });
    expect(second.resumedFrom).toBe(7);
    expect(second.valLoss).toBe(whole.valLoss);
    expect(await adapterTensors(second.adapterDir)).toEqual(await adapterTensors(whole.adapterDir));

    // Registered over its base and served: the base's engine with the adapter merged.
    const v = await registry.registerChatAdapter(whole.adapterDir, 'v1', { source: 'sft' });
    const served = loadChatModelVersion(registry.dir(v.version));
    const trained = trainableFromChatModel(loadChatModelVersion(baseDir).model);
    const adapter = adapterFromPeft(readPeftAdapter(whole.adapterDir), trained, 'v1');
    adapter.attach(trained);
    const ids = Array.from(encodeChatSftExample(served.tokenizer, examples[1]!, { maxTokens: 512 })!.ids);
    const unmerged = tf.tidy(() => trained.forward(tf.tensor2d(ids, [1, ids.length], 'int32')).dataSync() as Float32Array);
    const merged = served.model.forward(ids);
    let diff = 0;
    for (let i = 0; i < merged.length; i++) diff = Math.max(diff, Math.abs(merged[i]! - unmerged[i]!));
    expect(diff).toBeLessThan(1e-4);
    adapter.dispose();
    trained.dispose();
  });
});

describe('the sft job on an imported chat model (teamllm train sft --base <imported version>)', () => {
  it('gates on held-out QA asked through its template, and registers the PEFT adapter over its base', { timeout: 300_000 }, async () => {
    const jobHome = path.join(tmpRoot, 'job-home');
    const tiny = tinyChatModel('qwen3', 6);
    // A context long enough for the answerer's system message and passages.
    const long = { ...tiny, hfConfig: { ...tiny.hfConfig, max_position_embeddings: 2048 }, config: { ...tiny.config, maxPositions: 2048 } };
    writeHfChatFolder(path.join(tmpRoot, 'qwen3-long'), long);
    const reg = new ModelRegistry(jobHome);
    await reg.registerChatModel(inspectHfChatModel(path.join(tmpRoot, 'qwen3-long')));
    await reg.promote('v1');
    const docs = path.join(tmpRoot, 'job-docs');
    await fs.mkdir(docs, { recursive: true });
    await fs.writeFile(path.join(docs, 'leave.md'), HANDBOOK_EN);
    const questions = path.join(tmpRoot, 'job-questions.jsonl');
    await fs.writeFile(questions, [{ question: 'How many days can I carry over?', answer: '5 days', source: 'leave.md', split: 'test' }].map((q) => JSON.stringify(q)).join('\n'));
    const params = { base: 'v1', docs: [docs], questions, maxIters: 2, batchSize: 2, rank: 2, alpha: 4, answerTokens: 4, evalInterval: 2, k: 1, generateMax: 8 };
    const gated = await runSftJob(params, { home: jobHome, ...stageServices(jobHome), runDir: path.join(jobHome, 'runs', '1-sft') });
    expect(gated.status).toBe('completed');
    expect(gated.before?.n).toBe(1);
    expect(gated.after?.n).toBe(1);
    expect(gated.comparison).toBeDefined();
    // Not evaluated: registered (not promoted) as an adapter version over v1, served merged.
    const plain = await runSftJob({ ...params, skipEval: true }, { home: jobHome, ...stageServices(jobHome), runDir: path.join(jobHome, 'runs', '2-sft') });
    expect(plain.promoted).toBe(false);
    const v = (await reg.get(plain.modelVersion!))!;
    expect(v).toMatchObject({ kind: 'chat', parent: 'v1', source: 'sft' });
    expect(loadChatModelVersion(reg.dir(v.version)).manifest.adapter).toEqual({ base: 'v1' });
    expect(plain.summary).toMatch(/registered v\d+, not promoted/);
    // SFT again on that adapter version: a fresh LoRA over it (merged), registered with it as one adapter of rank 2 + 2 over v1.
    const again = await runSftJob({ ...params, base: v.version, skipEval: true }, { home: jobHome, ...stageServices(jobHome), runDir: path.join(jobHome, 'runs', '3-sft') });
    const v2 = (await reg.get(again.modelVersion!))!;
    expect(v2).toMatchObject({ kind: 'chat', parent: v.version, source: 'sft' });
    expect(loadChatModelVersion(reg.dir(v2.version)).manifest.adapter).toEqual({ base: 'v1' });
    expect(readPeftAdapter(reg.dir(v2.version)).config).toMatchObject({ rank: 4, alpha: 8 });
  });
});
