/**
 * An imported chat model held by a worker thread (src/model/import/worker-chat-model.ts) with a
 * tiny random-weight Llama: the same ids as the in-process model, the main thread free while the
 * worker computes, abort and the queue, a load failure reported, and the thread ended on close.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CHAT_MANIFEST, CHAT_MANIFEST_FORMAT, inspectChatModelVersion, loadChatModelVersion } from '../../../src/model/import/chat-manifest.ts';
import { greedyIds, inProcessGenerator, type ForwardModel, type TokenGenerator } from '../../../src/model/import/chat-generation.ts';
import { WorkerChatModel } from '../../../src/model/import/worker-chat-model.ts';
import { tinyChatModel, writeHfChatFolder } from './tiny-llama.ts';

const dirs: string[] = [];
const workers: WorkerChatModel[] = [];
afterAll(async () => {
  await Promise.all(workers.splice(0).map((w) => w.close()));
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

function versionFolder(): string {
  const dir = mkdtempSync(join(tmpdir(), 'teamllm-chat-worker-'));
  dirs.push(dir);
  const tiny = tinyChatModel('llama', 5);
  writeHfChatFolder(dir, tiny);
  writeFileSync(
    join(dir, CHAT_MANIFEST),
    JSON.stringify({ format: CHAT_MANIFEST_FORMAT, from: 'hf', architecture: 'LlamaForCausalLM', dtype: 'F32', numParameters: 1, licence: 'test', origin: dir, eosIds: tiny.eosIds, hasChatTemplate: true }),
  );
  return dir;
}

async function start(dir: string, options: { prefillChunk?: number; forwardDelayMs?: number } = {}): Promise<WorkerChatModel> {
  const worker = await WorkerChatModel.start({ dir, ...options });
  workers.push(worker);
  return worker;
}

async function collect(generator: TokenGenerator, ids: number[], options: { maxTokens: number; stop?: number[]; signal?: AbortSignal }): Promise<number[]> {
  const out: number[] = [];
  for await (const id of generator.stream(ids, { stop: [], ...options })) out.push(id);
  return out;
}

let dir: string;
let prompt: number[];
let inProcess: ReturnType<typeof loadChatModelVersion>;
beforeAll(() => {
  dir = versionFolder();
  inProcess = loadChatModelVersion(dir);
  const { tokenizer } = inspectChatModelVersion(dir);
  prompt = tokenizer.encodeChat(
    [
      { role: 'system', content: 'Answer from the passages.' },
      { role: 'user', content: 'Passages:\n\n[1] Leave\nEmployees get 25 vacation days a year.\n\nQuestion: how many vacation days?' },
    ],
    { addGenerationPrompt: true },
  );
});

describe('WorkerChatModel', () => {
  it('generates exactly the ids of the in-process model, prefill chunked or not, and serves concurrent askers in turn', async () => {
    expect(prompt.length).toBeGreaterThan(20);
    const maxTokens = Math.min(24, inProcess.model.config.maxPositions - prompt.length);
    // The reference: LlamaModel.generate, the whole prompt in one pass.
    const reference = inProcess.model.generate(prompt, { maxTokens });
    expect(reference).toHaveLength(maxTokens);
    expect(await collect(inProcessGenerator(inProcess.model), prompt, { maxTokens })).toEqual(reference);
    const worker = await start(dir, { prefillChunk: 7 });
    expect(worker.config.maxPositions).toBe(inProcess.model.config.maxPositions);
    expect(await collect(worker, prompt, { maxTokens })).toEqual(reference);
    // A stop id ends the answer there, without it.
    const stop = reference[5]!;
    expect(await collect(worker, prompt, { maxTokens, stop: [stop] })).toEqual(reference.slice(0, reference.indexOf(stop)));
    // Three askers at once: each gets the whole of its own answer.
    const shorter = prompt.slice(0, 12);
    const [a, b, c] = await Promise.all([collect(worker, prompt, { maxTokens }), collect(worker, shorter, { maxTokens: 6 }), collect(worker, prompt, { maxTokens: 3 })]);
    expect(a).toEqual(reference);
    expect(b).toEqual(inProcess.model.generate(shorter, { maxTokens: 6 }));
    expect(c).toEqual(reference.slice(0, 3));
  });

  it('keeps the main thread free while the worker computes (an in-process model holds it)', async () => {
    const delayMs = 150;
    const order = async (generator: TokenGenerator) => {
      const events: string[] = [];
      const timer = new Promise<void>((resolve) => setTimeout(() => resolve(void events.push('timer')), 10));
      for await (const _ of generator.stream(prompt, { maxTokens: 2, stop: [] })) events.push('token');
      await timer;
      return events;
    };
    // The same slowness in-process: the forward blocks this thread, so the timer fires only after both tokens.
    const block = (ms: number) => Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
    const slow: ForwardModel = { config: inProcess.model.config, newCache: (n) => inProcess.model.newCache(n), forward: (ids, cache, o) => (block(delayMs), inProcess.model.forward(ids, cache, o)) };
    expect(await order({ config: slow.config, stream: (ids, o) => greedyIds(slow, ids, { ...o, pause: () => Promise.resolve() }) })).toEqual(['token', 'token', 'timer']);
    const worker = await start(dir, { forwardDelayMs: delayMs });
    expect(await order(worker)).toEqual(['timer', 'token', 'token']);
  });

  it('stops on abort, during the prefill or between tokens, and serves the next request', async () => {
    const worker = await start(dir, { prefillChunk: 2, forwardDelayMs: 40 });
    const maxTokens = 5;
    const ids = prompt.slice(0, 40);
    const reference = inProcess.model.generate(ids, { maxTokens });
    // Aborted during the prefill (many 40 ms chunks): no id comes, and the worker is free for the next asker at once.
    const early = new AbortController();
    const aborted = collect(worker, ids, { maxTokens, signal: early.signal });
    const next = collect(worker, prompt.slice(0, 4), { maxTokens: 2 });
    setTimeout(() => early.abort(), 100);
    const finished: string[] = [];
    await Promise.all([aborted.then((ids) => finished.push(`aborted:${ids.length}`)), next.then((ids) => finished.push(`next:${ids.length}`))]);
    expect(finished).toEqual(['aborted:0', 'next:2']);
    // Aborted after its first id: it ends there.
    const late = new AbortController();
    const got: number[] = [];
    for await (const id of worker.stream(ids, { maxTokens, stop: [], signal: late.signal })) {
      got.push(id);
      late.abort();
    }
    expect(got).toEqual(reference.slice(0, 1));
    // An asker that stops reading cancels too; the next request gets its whole answer.
    for await (const _ of worker.stream(ids, { maxTokens, stop: [] })) break;
    expect(await collect(worker, ids, { maxTokens })).toEqual(reference);
  });

  it('reports weights that cannot be read, and ends its thread on close', async () => {
    const broken = versionFolder();
    writeFileSync(join(broken, 'model.safetensors'), Buffer.from('not a safetensors file'));
    await expect(WorkerChatModel.start({ dir: broken })).rejects.toThrow(/safetensors/i);
    const worker = await WorkerChatModel.start({ dir });
    const exited = worker.exited.then((code) => `exited ${code}`);
    await worker.close();
    expect(await exited).toMatch(/^exited /);
    await expect(collect(worker, prompt, { maxTokens: 2 })).rejects.toThrow(/closed/);
  });
});
