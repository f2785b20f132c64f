/**
 * An imported chat model served by the bot, through the real runtime and HTTP routes: a tiny
 * random-weight Llama (Hugging Face folder) imported next to a model trained here, promoted,
 * asked through POST /api/chat and /api/chat/stream (the stored prompt is its chat template
 * around the instructions, the numbered passages and the question), refusing without calling
 * the model, rolled back to the model before it; a damaged weight file degrades the bot to
 * retrieval-only answers with one logged line, never a crash; with TEAMLLM_SERVING_ENGINE=llama.cpp
 * the same answers come from llama.cpp (node-llama-cpp) on the version's GGUF export. Random weights write gibberish:
 * structure is asserted, never wording.
 */
import { mkdirSync, mkdtempSync, openSync, closeSync, promises as fsp, writeSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { loadConfig } from '../../src/app/config.ts';
import { createRuntime, type Runtime } from '../../src/app/runtime.ts';
import { evalAnswers } from '../../src/app/eval-answers.ts';
import { silentLogger, type Logger } from '../../src/core/index.ts';
import { saveModelFiles } from '../../src/model/model-files.ts';
import { ModelRegistry } from '../../src/model/registry.ts';
import { CharTokenizer } from '../../src/model/tokenizer/index.ts';
import { WorkerChatModel } from '../../src/model/import/worker-chat-model.ts';
import { LlamaCppChatModel } from '../../src/model/import/llama-cpp-chat-model.ts';
import { llamaConfigFromHf } from '../../src/model/import/llama-config.ts';
import { CHAT_SYSTEM_PROMPT, generatedDirect } from '../../src/rag/chat-model-answerer.ts';
import { tinyModel, useBackend } from '../model/helpers.ts';
import { tinyChatModel, writeHfChatFolder } from '../model/import/tiny-llama.ts';

const DOCS = {
  'docs/hr/leave.md':
    '# Leave\n\n## Annual leave\n\nFull-time staff receive 25 vacation days per year. You may carry over at most 5 days into the next year.\n\n## Sick leave\n\nReport sick to your manager before 09:30 on the first day.',
  'docs/it/devices.md':
    '# IT\n\n## Lost devices\n\nReport a lost or stolen laptop in Beacon within 1 hour of noticing. If it was stolen, file a police report.\n\n## VPN\n\nThe VPN client is called Tunnelbee.',
};
const ANSWERABLE = 'How many vacation days do I get per year?';
const UNANSWERABLE = 'What is the parking policy for electric scooters?';
const ACTOR = { id: 'console:test', isAdmin: true };

const temp: string[] = [];
function tempHome(): string {
  const dir = mkdtempSync(join(tmpdir(), 'teamllm-chat-serving-'));
  temp.push(dir);
  for (const [name, content] of Object.entries(DOCS)) {
    mkdirSync(join(dir, name, '..'), { recursive: true });
    writeFileSync(join(dir, name), content);
  }
  return dir;
}
const runtimes: Runtime[] = [];
afterAll(async () => {
  for (const r of runtimes.splice(0)) await r.close();
  await Promise.all(temp.map((d) => fsp.rm(d, { recursive: true, force: true })));
});

function recordingLogger(): Logger & { lines: { level: string; msg: string }[] } {
  const lines: { level: string; msg: string }[] = [];
  const at = (level: string) => (_: object, msg?: string) => void lines.push({ level, msg: msg ?? '' });
  const logger = { lines, debug: at('debug'), info: at('info'), warn: at('warn'), error: at('error'), child: () => logger };
  return logger;
}

async function start(home: string, logger: Logger = silentLogger, engine: 'teamllm' | 'llama.cpp' = 'teamllm', llamaCppPackage?: string): Promise<Runtime> {
  const config = loadConfig({ env: { TEAMLLM_HOME: home, TEAMLLM_QUICKSTART: 'off', TEAMLLM_SAMPLE_KB: 'false', TEAMLLM_SERVING_ENGINE: engine }, cwd: home });
  // llama.cpp: one thread (this machine's two cores are shared; ggml's spinning threads crawl when
  // oversubscribed), an F32 KV cache and no flash attention (its F16 cache is a rounding of its own).
  const runtime = await createRuntime(config, { defaultMetrics: false, logger, llamaCpp: { threads: 1, kvCacheType: 'F32', flashAttention: false, ...(llamaCppPackage ? { specifier: llamaCppPackage } : {}) } });
  runtimes.push(runtime);
  return runtime;
}

async function stop(runtime: Runtime): Promise<void> {
  runtimes.splice(runtimes.indexOf(runtime), 1);
  await runtime.close();
}

async function ask(runtime: Runtime, text: string) {
  const res = await runtime.http.request('/api/chat', { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ text }) });
  return { status: res.status, body: (await res.json()) as { answerId: string; answer: string; direct: string; sources: { source: string; title: string; text: string }[]; model: string; modelVersion: string; outcome: string } };
}

/** A tiny Llama (untied head: a tied random model only repeats the prompt's last token) with room for the passages. */
function writeTinyLlama(dir: string): void {
  const tiny = tinyChatModel('llama', 3);
  const hfConfig = { ...tiny.hfConfig, max_position_embeddings: 1024 };
  writeHfChatFolder(dir, { ...tiny, hfConfig, config: llamaConfigFromHf(hfConfig) }, 'F32', { licence: 'Apache License 2.0' });
}

describe('serving an imported chat model', () => {
  let home: string;
  let runtime: Runtime;
  beforeAll(async () => {
    home = tempHome();
    // v1: a model trained here, the one rollback returns to.
    await useBackend('cpu');
    const tokenizer = CharTokenizer.fromText(Array.from({ length: 95 }, (_, i) => String.fromCharCode(32 + i)).join('') + '\n\t', { specialTokens: true });
    const made = join(home, 'made');
    mkdirSync(made);
    await saveModelFiles(made, tinyModel({ vocabSize: tokenizer.vocabSize, blockSize: 64, nLayer: 1, nHead: 2, nEmbd: 8, dropout: 0, bias: true }), tokenizer, { source: 'test' });
    const registry = new ModelRegistry(home);
    await registry.promote((await registry.register(made, { source: 'pretrain' })).version);
    writeTinyLlama(join(home, 'downloads', 'tiny-llama'));
    runtime = await start(home);
    await runtime.kb.addPaths([join(home, 'docs')]);
  }, 60_000);

  it('imports, promotes and answers through /api/chat with the chat template, refuses without the model, and rolls back', async () => {
    expect(runtime.bot.serving.model).toMatchObject({ version: 'v1' });
    const imported = await runtime.models.importModel(join(home, 'downloads', 'tiny-llama'), { name: 'tiny-llama' }, ACTOR);
    expect(imported).toMatch(/^Imported v2 "tiny-llama": LlamaForCausalLM, /);
    expect(imported).toContain('Serve it: teamllm model promote v2');
    expect(await runtime.models.promote('v2', ACTOR)).toMatch(/^Now answering with v2 \(was v1; \/model rollback returns to it\)\./);
    expect(runtime.bot.serving.model).toEqual({ name: 'tiny-llama', version: 'v2', kind: 'language-model' });
    const list = await runtime.models.list();
    expect(list).toMatch(/^▶ v2 \(serving\) "tiny-llama" — imported chat model LlamaForCausalLM, [\d,]+ parameters, F32, licence Apache License 2\.0/m);
    expect(list).toMatch(/^• v1 — pretrain/m);

    // Served in a worker thread (the default): the model is what the worker streams from.
    const forward = vi.spyOn(WorkerChatModel.prototype, 'stream');
    try {
      const reply = await ask(runtime, ANSWERABLE);
      expect(reply.status).toBe(200);
      expect(reply.body).toMatchObject({ model: 'tiny-llama', modelVersion: 'v2', outcome: 'answered' });
      expect(forward).toHaveBeenCalled();
      expect(reply.body.answer.trim().length).toBeGreaterThan(0);
      expect(reply.body.direct).toBe(generatedDirect(reply.body.answer));
      expect(reply.body.sources.some((s) => s.text.includes('25 vacation days'))).toBe(true);
      // The answer record keeps the exact prompt: the model's template around the passages and the question.
      const record = (await runtime.store.getAnswer(reply.body.answerId))!;
      expect(record).toMatchObject({ modelVersion: 'v2', output: reply.body.answer });
      expect(record.prompt.startsWith(`<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\n${CHAT_SYSTEM_PROMPT}<|eot_id|><|start_header_id|>user<|end_header_id|>\n\nPassages:\n\n[1] `)).toBe(true);
      // Numbered as the sources are listed: [n] cites sources[n-1].
      for (const [i, s] of reply.body.sources.entries()) expect(record.prompt).toContain(`[${i + 1}] ${s.title} (${s.source})\n${s.text.trim()}`);
      expect(record.prompt.endsWith(`\n\nQuestion: ${ANSWERABLE}<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n`)).toBe(true);
      // A 👍 from the person who asked (their session cookie) is stored against the answer, and so
      // against the imported version that wrote it.
      const asked = await runtime.http.request('/api/chat', { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ text: ANSWERABLE }) });
      const session = asked.headers.get('set-cookie')!.split(';')[0]!;
      const answerId = ((await asked.json()) as { answerId: string }).answerId;
      const vote = await runtime.http.request('/api/feedback', { method: 'POST', headers: { 'content-type': 'application/json', cookie: session }, body: JSON.stringify({ answerId, value: 1 }) });
      expect(vote.status).toBe(200);
      expect(await vote.json()).toEqual({ ok: true, up: 1, down: 0 });
      expect((await runtime.store.feedbackFor(answerId)).map((f) => f.value)).toEqual([1]);
      expect((await runtime.store.getAnswer(answerId))!.modelVersion).toBe('v2');

      // The streaming route gives the same (greedy) answer.
      const streamed = await runtime.http.request('/api/chat/stream', { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ text: ANSWERABLE }) });
      const events = (await streamed.text()).split('\n\n').filter(Boolean);
      const done = events.find((e) => e.startsWith('event: done'))!;
      expect(JSON.parse(done.slice(done.indexOf('data: ') + 6))).toMatchObject({ answer: reply.body.answer, direct: reply.body.direct, modelVersion: 'v2' });
      expect(events.some((e) => e.startsWith('event: update'))).toBe(true);

      // The gate refuses: the candidate answerer's words, and the model is never called.
      forward.mockClear();
      const refused = await ask(runtime, UNANSWERABLE);
      expect(refused.status).toBe(200);
      expect(refused.body).toMatchObject({ direct: '', sources: [], modelVersion: 'v2' });
      expect(refused.body.answer).toMatch(/^Sorry, I couldn't find that in the knowledge base\./);
      expect(forward).not.toHaveBeenCalled();
    } finally {
      forward.mockRestore();
    }

    // Export writes imported chat models only: v1 was trained here.
    await expect(runtime.models.exportModel('v1', { format: 'gguf', target: join(home, 'exported') }, ACTOR)).rejects.toThrow(/^v1 was trained here \(teamllm's own model, not a Llama-family one\): export writes imported chat models/);

    expect(await runtime.models.rollback(ACTOR)).toBe('Rolled back: answering with v1 again (was v2).');
    expect(runtime.bot.serving.model).toMatchObject({ version: 'v1', kind: 'language-model' });
    expect((await ask(runtime, ANSWERABLE)).body.modelVersion).toBe('v1');
    expect(await runtime.models.list()).toMatch(/^• v2 "tiny-llama" — imported chat model .*\(serve it: teamllm model promote v2\)$/m);
  }, 120_000);

  it('is evaluated by teamllm eval qa beside the no-model answerer, refusing what it refuses', async () => {
    const questions = join(home, 'questions.jsonl');
    writeFileSync(questions, [JSON.stringify({ question: ANSWERABLE, answer: '25 vacation days', source: 'hr/leave.md' }), JSON.stringify({ question: UNANSWERABLE, answer: 'UNANSWERABLE' })].join('\n'));
    const report = await evalAnswers({ home, kb: runtime.kb, questions, model: 'v2', out: () => {} });
    expect(report.rows.map((r) => r.label)).toEqual(['no model: retrieval-only quotes', 'served: v2 (imported chat model, generated through its template)']);
    const served = report.rows[1]!.scores;
    expect(served).toMatchObject({ answerable: 1, unanswerable: 1, unanswerableRefused: 1, answerableRefusedCount: 0 });
  }, 60_000);
});

describe('TEAMLLM_SERVING_ENGINE=llama.cpp', () => {
  it('answers through /api/chat and /api/chat/stream with the same greedy text, prompt, sources and refusals as teamllm\'s engine', async () => {
    const home = tempHome();
    writeTinyLlama(join(home, 'downloads', 'tiny-llama'));
    const ours = await start(home);
    await ours.kb.addPaths([join(home, 'docs')]);
    await ours.models.importModel(join(home, 'downloads', 'tiny-llama'), { name: 'tiny-llama' }, ACTOR);
    await ours.models.promote('v1', ACTOR);
    const expected = await ask(ours, ANSWERABLE);
    expect(expected.body).toMatchObject({ modelVersion: 'v1', outcome: 'answered' });
    const expectedPrompt = (await ours.store.getAnswer(expected.body.answerId))!.prompt;
    await stop(ours);

    const logger = recordingLogger();
    const stream = vi.spyOn(LlamaCppChatModel.prototype, 'stream');
    try {
      const runtime = await start(home, logger, 'llama.cpp');
      expect(logger.lines.some((l) => l.level === 'info' && l.msg === 'llama.cpp serves the imported chat model')).toBe(true);
      // The GGUF export written on first use into the version folder.
      expect(readdirSync(join(home, 'models', 'v1', 'llama.cpp'))).toEqual(['tiny-llama-F32.gguf']);
      const reply = await ask(runtime, ANSWERABLE);
      expect(stream).toHaveBeenCalledTimes(1);
      expect(reply.body).toMatchObject({ answer: expected.body.answer, direct: expected.body.direct, model: 'tiny-llama', modelVersion: 'v1', outcome: 'answered' });
      expect(reply.body.answer.trim().length).toBeGreaterThan(0);
      expect(reply.body.sources).toEqual(expected.body.sources);
      expect((await runtime.store.getAnswer(reply.body.answerId))!.prompt).toBe(expectedPrompt);

      const streamed = await runtime.http.request('/api/chat/stream', { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ text: ANSWERABLE }) });
      const events = (await streamed.text()).split('\n\n').filter(Boolean);
      const done = events.find((e) => e.startsWith('event: done'))!;
      expect(JSON.parse(done.slice(done.indexOf('data: ') + 6))).toMatchObject({ answer: expected.body.answer, direct: expected.body.direct, modelVersion: 'v1' });

      // The same "don't know" gate: refused before llama.cpp is asked.
      stream.mockClear();
      const refused = await ask(runtime, UNANSWERABLE);
      expect(refused.body).toMatchObject({ direct: '', sources: [], modelVersion: 'v1' });
      expect(stream).not.toHaveBeenCalled();
      await stop(runtime);
    } finally {
      stream.mockRestore();
    }

    // Without node-llama-cpp: one line says so, and teamllm's engine answers.
    const missing = recordingLogger();
    const fallback = await start(home, missing, 'llama.cpp', 'node-llama-cpp-not-installed');
    const said = missing.lines.filter((l) => /node-llama-cpp/.test(l.msg));
    expect(said).toEqual([{ level: 'warn', msg: expect.stringMatching(/^TEAMLLM_SERVING_ENGINE=llama\.cpp: node-llama-cpp is not installed \(npm install node-llama-cpp@3\.21\.1 adds it\).*; imported chat models are served by teamllm's own engine$/) }]);
    expect((await ask(fallback, ANSWERABLE)).body).toMatchObject({ answer: expected.body.answer, modelVersion: 'v1' });
    await stop(fallback);
  }, 120_000);
});

describe('a damaged imported chat model', () => {
  it('degrades to retrieval-only answers with one logged line, whether its hash or its loading catches it', async () => {
    const home = tempHome();
    writeTinyLlama(join(home, 'downloads', 'tiny-llama'));
    const first = await start(home);
    await first.kb.addPaths([join(home, 'docs')]);
    await first.models.importModel(join(home, 'downloads', 'tiny-llama'), {}, ACTOR);
    await first.models.promote('v1', ACTOR);
    expect(first.bot.serving.model).toMatchObject({ version: 'v1', kind: 'language-model' });
    await stop(first);

    // The safetensors header's length overwritten: neither the recorded sha256 nor the reader accepts it.
    const weights = join(home, 'models', 'v1', 'model.safetensors');
    const fd = openSync(weights, 'r+');
    writeSync(fd, Buffer.alloc(8, 0xff), 0, 8, 0);
    closeSync(fd);

    for (const how of ['hash', 'load'] as const) {
      if (how === 'load') {
        // An older registry without recorded hashes: the damage is found by reading the file.
        const file = join(home, 'models', 'registry.json');
        const reg = JSON.parse(readFileSync(file, 'utf8'));
        delete reg.versions.v1.files;
        writeFileSync(file, JSON.stringify(reg));
      }
      const logger = recordingLogger();
      const runtime = await start(home, logger);
      expect(runtime.bot.serving.model.kind, how).toBe('retrieval-only');
      const errors = logger.lines.filter((l) => l.level === 'error' && /model version v1 cannot be served/.test(l.msg));
      expect(errors, how).toHaveLength(1);
      expect(errors[0]!.msg).toMatch(how === 'hash' ? /model\.safetensors does not match the sha256/ : /could not be loaded/);
      expect(errors[0]!.msg).toMatch(/Answering with retrieval-only answers/);
      const health = (await (await runtime.http.request('/healthz')).json()) as Record<string, unknown>;
      expect(health).toMatchObject({ status: 'degraded', degraded: ['model'], modelFallback: { wanted: 'v1', file: 'model.safetensors', serving: null } });
      const reply = await ask(runtime, ANSWERABLE);
      expect(reply.status).toBe(200);
      expect(reply.body.answer).toContain('25 vacation days');
      await stop(runtime);
    }
  }, 120_000);
});
