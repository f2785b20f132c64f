/**
 * The llama.cpp serving engine (src/model/import/llama-cpp-chat-model.ts) on a tiny random-weight
 * Llama version: its GGUF export is written into the version folder on first use and reused; it
 * continues a chat prompt with the same greedy ids as teamllm's own generator, stops at the
 * end-of-turn ids and the token limit, stops on abort, serves concurrent requests one at a time;
 * without node-llama-cpp it says why instead of failing. One llama.cpp thread: this machine's two
 * cores are shared, and ggml's spinning threads slow to ~1 s a token when oversubscribed.
 */
import { existsSync, mkdtempSync, readdirSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { inProcessGenerator } from '../../../src/model/import/chat-generation.ts';
import { loadChatModelVersion } from '../../../src/model/import/chat-manifest.ts';
import { inspectImport } from '../../../src/model/import/inspect-import.ts';
import { LlamaCppChatModel } from '../../../src/model/import/llama-cpp-chat-model.ts';
import { llamaConfigFromHf } from '../../../src/model/import/llama-config.ts';
import { ModelRegistry } from '../../../src/model/registry.ts';
import { tinyChatModel, writeHfChatFolder } from './tiny-llama.ts';

let dir: string;
let versionDir: string;

beforeAll(async () => {
  dir = mkdtempSync(path.join(tmpdir(), 'teamllm-llama-cpp-engine-'));
  const tiny = tinyChatModel('llama', 3);
  const hfConfig = { ...tiny.hfConfig, max_position_embeddings: 512 };
  const folder = path.join(dir, 'tiny-llama');
  writeHfChatFolder(folder, { ...tiny, hfConfig, config: llamaConfigFromHf(hfConfig) });
  const registry = new ModelRegistry(path.join(dir, 'home'));
  const inspected = inspectImport(folder);
  if (inspected.kind !== 'chat') throw new Error('expected a chat model');
  versionDir = registry.dir((await registry.registerChatModel(inspected.description)).version);
});

afterAll(() => rmSync(dir, { recursive: true, force: true }));

async function collect(stream: AsyncIterable<number>, after?: (count: number) => void): Promise<number[]> {
  const out: number[] = [];
  for await (const id of stream) {
    out.push(id);
    after?.(out.length);
  }
  return out;
}

describe('the llama.cpp engine', () => {
  it('exports the version once, continues as teamllm does, stops, aborts and takes turns', { timeout: 60_000 }, async () => {
    const ours = loadChatModelVersion(versionDir);
    const messages = [
      { role: 'system' as const, content: 'Answer from the passages.' },
      { role: 'user' as const, content: 'How many days of annual leave do I get? The handbook says every employee gets twenty days.' },
    ];
    const ids = ours.tokenizer.encodeChat(messages);
    const started = await LlamaCppChatModel.start(versionDir, ours.description.config.maxPositions, { name: 'tiny-llama', threads: 1 });
    if ('unavailable' in started) throw new Error(started.unavailable);
    const engine = started.model;
    try {
      expect(started.exported).toBe(true);
      expect(readdirSync(path.join(versionDir, 'llama.cpp'))).toEqual(['tiny-llama-F32.gguf']);
      expect(engine.file).toBe(path.join(versionDir, 'llama.cpp', 'tiny-llama-F32.gguf'));
      expect(engine.config.maxPositions).toBe(512);
      expect(engine.gpu).toBe(false);

      const reference = await collect(inProcessGenerator(ours.model).stream(ids, { maxTokens: 32, stop: [] }));
      expect(reference).toHaveLength(32);
      expect(await collect(engine.stream(ids, { maxTokens: 32, stop: [] }))).toEqual(reference);
      // A stop id ends the answer before it; the limit ends it too.
      expect(await collect(engine.stream(ids, { maxTokens: 32, stop: [reference[5]!] }))).toEqual(reference.slice(0, reference.indexOf(reference[5]!)));
      expect(await collect(engine.stream(ids, { maxTokens: 4, stop: [] }))).toEqual(reference.slice(0, 4));

      // Abort after three tokens: nothing more comes.
      const controller = new AbortController();
      const aborted = await collect(engine.stream(ids, { maxTokens: 32, stop: [], signal: controller.signal }), (n) => n === 3 && controller.abort());
      expect(aborted).toEqual(reference.slice(0, 3));

      // Two at once: each gets its own whole answer (one sequence, turns taken).
      const other = ours.tokenizer.encodeChat([{ role: 'user', content: 'Who approves the travel expense report?' }]);
      const otherReference = await collect(inProcessGenerator(ours.model).stream(other, { maxTokens: 16, stop: [] }));
      const [a, b] = await Promise.all([collect(engine.stream(ids, { maxTokens: 32, stop: [] })), collect(engine.stream(other, { maxTokens: 16, stop: [] }))]);
      expect(a).toEqual(reference);
      expect(b).toEqual(otherReference);
    } finally {
      await engine.close();
    }
    await engine.exited;

    // The second start reuses the file.
    const file = path.join(versionDir, 'llama.cpp', 'tiny-llama-F32.gguf');
    const mtime = statSync(file).mtimeMs;
    const again = await LlamaCppChatModel.start(versionDir, 512, { name: 'tiny-llama', threads: 1 });
    if ('unavailable' in again) throw new Error(again.unavailable);
    expect(again.exported).toBe(false);
    expect(statSync(file).mtimeMs).toBe(mtime);
    await again.model.close();
  });

  it('without node-llama-cpp: says so and what installs it, writes nothing', async () => {
    const started = await LlamaCppChatModel.start(versionDir, 512, { name: 'x', specifier: 'node-llama-cpp-not-installed' });
    expect(started).toEqual({ unavailable: expect.stringMatching(/^node-llama-cpp is not installed \(npm install node-llama-cpp@3\.21\.1 adds it\)/) });
    expect(existsSync(path.join(versionDir, 'llama.cpp', 'x-F32.gguf'))).toBe(false);
  });
});
