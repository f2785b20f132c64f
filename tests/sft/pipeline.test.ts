import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { useBackend } from '../model/helpers.ts';
import { saveModelFiles } from '../../src/model/model-files.ts';
import { ModelRegistry } from '../../src/model/registry.ts';
import { AdapterStore, AdapterSet } from '../../src/model/lora/index.ts';
import { LoadedModel } from '../../src/model/loaded-model.ts';
import { runSftJob } from '../../src/training/sft/pipeline.ts';
import { generateQa } from '../../src/training/sft/qa-generator.ts';
import { silentLogger } from '../../src/core/index.ts';
import { SqliteStore } from '../../src/core/sqlite-store.ts';
import { JobRunner } from '../../src/training/jobs/job-runner.ts';
import { TRAINING_STAGES } from '../../src/training/stages/index.ts';
import { runStage as runSftStage } from '../../src/training/stages/sft-stage.ts';
import { ServedModels, versionAdapterDir } from '../../src/model/lora/index.ts';
import { existsSync } from 'node:fs';
import { knowledgeBaseFile, LocalKnowledgeBase } from '../../src/rag/index.ts';
import { charTokenizer, tinyChatModel, HANDBOOK_EN, HANDBOOK_ZH } from './helpers.ts';
import { stageServices } from '../../src/training/jobs/stage-services.ts';

const tmpRoot = await fs.mkdtemp(path.join(os.tmpdir(), 'teamllm-sft-job-'));
afterAll(() => fs.rm(tmpRoot, { recursive: true, force: true }));

const docsDir = path.join(tmpRoot, 'docs');
await fs.mkdir(path.join(docsDir, 'en'), { recursive: true });
await fs.mkdir(path.join(docsDir, 'zh'), { recursive: true });
await fs.writeFile(path.join(docsDir, 'en', 'leave.md'), HANDBOOK_EN);
await fs.writeFile(path.join(docsDir, 'zh', 'leave.md'), HANDBOOK_ZH);
const questions = [
  { id: 'q1', question: 'Until when can I use carried-over days?', answer: '1 July', source: 'en/leave.md', split: 'train' },
  { id: 'q2', question: 'How many days can I carry over?', answer: '5 days', source: 'en/leave.md', split: 'test' },
  { id: 'q3', question: 'By what time must I report sick?', answer: '09:30', source: 'en/leave.md', split: 'test' },
];
const questionsFile = path.join(tmpRoot, 'questions.jsonl');
await fs.writeFile(questionsFile, questions.map((q) => JSON.stringify(q)).join('\n'));
const generated = generateQa([{ source: 'en/leave.md', text: HANDBOOK_EN }, { source: 'zh/leave.md', text: HANDBOOK_ZH }]);
const tok = charTokenizer(generated.map((q) => q.question + q.answer).join('') + questions.map((q) => q.question).join(''));

async function homeWithBase(name: string): Promise<string> {
  await useBackend('wasm');
  const home = path.join(tmpRoot, name);
  const folder = path.join(tmpRoot, `${name}-base`);
  const gpt = tinyChatModel(tok.vocabSize, { blockSize: 160 });
  await saveModelFiles(folder, gpt, tok, { source: 'pretrain' });
  gpt.dispose();
  await new ModelRegistry(home).register(folder, { source: 'pretrain', promote: true });
  return home;
}

const quick = { docs: [docsDir], questions: questionsFile, maxIters: 3, batchSize: 4, rank: 2, alpha: 4, answerTokens: 6, evalInterval: 3, k: 2 };

describe('the sft job', () => {
  it('measures QA before and after on the held-out split, and does not register an adapter that does not beat its base', async () => {
    const home = await homeWithBase('home-a');
    const lines: string[] = [];
    const stages = new Set<string>();
    const r = await runSftJob(quick, { home, ...stageServices(home), runDir: path.join(home, 'runs', '1-sft'), log: (l) => lines.push(l), progress: (e) => stages.add(e.stage) });
    expect(r.status).toBe('completed');
    expect(r.before!.n).toBe(2);
    expect(r.after!.n).toBe(2);
    expect(r.before!.retrievalHit).toBe(1);
    expect(r.comparison!.improved).toBe(false);
    expect(r.summary).toMatch(/does NOT beat its base on the 2 held-out questions.*not promoted/);
    expect(r.modelVersion).toBeUndefined();
    expect(r.promoted).toBe(false);
    expect((await new ModelRegistry(home).list()).map((v) => v.version)).toEqual(['v1']);
    expect(await new AdapterStore(home).list()).toEqual([]);
    expect(lines.some((l) => /generated \d+ question\/answer examples from 2 documents/.test(l))).toBe(true);
    expect(lines.some((l) => /1 questions of questions\.jsonl \(not "test"\) used as training examples/.test(l))).toBe(true);
    expect(lines.some((l) => /trainable parameters = /.test(l))).toBe(true);
    expect([...stages].sort()).toEqual(['evaluate', 'sft']);
    const report = await fs.readFile(path.join(home, 'runs', '1-sft', 'report.txt'), 'utf8');
    expect(report).toMatch(/base v1 +2 /);
    expect(report).toMatch(/base \+ LoRA +2 /);
  });

  it('decodes its before/after evaluation as asked (extractive: answers copied from the passages) and re-measures a base scored another way', async () => {
    const home = await homeWithBase('home-x');
    const runDir = path.join(home, 'runs', '1-sft');
    const r = await runSftJob({ ...quick, decoding: 'extractive' }, { home, ...stageServices(home), runDir });
    expect(r.before!.decoding).toBe('extractive');
    expect(r.after!.decoding).toBe('extractive');
    for (const item of [...r.before!.items, ...r.after!.items]) if (item.goldInContext) expect([HANDBOOK_EN, HANDBOOK_ZH].some((d) => d.includes(item.prediction))).toBe(true);
    expect(await fs.readFile(path.join(runDir, 'report.txt'), 'utf8')).toMatch(/Held-out QA, extractive decoding/);
    // The cached base scores were extractive: a free-decoding job measures the base again.
    const again = await runSftJob({ ...quick, decoding: 'free' }, { home, ...stageServices(home), runDir });
    expect(again.before!.decoding).toBe('free');
  });

  it("the stage's gate: an adapter that beats its base passes and is registered with its adapter; one that does not fails with the verdict", async () => {
    // Every question has the same answer, so a few steps teach the adapter the answer the base never gives.
    const sick = ['When must I report sick?', 'Report sick by what time?', 'What is the deadline to call in sick?', 'By when do I tell my manager I am sick?', 'Sick report time?', 'What time is the sick report due?'];
    const qFile = path.join(tmpRoot, 'sick.jsonl');
    await fs.writeFile(qFile, sick.map((q, i) => JSON.stringify({ id: `s${i}`, question: q, answer: '09:30', source: 'en/leave.md', split: i < 4 ? 'train' : 'test' })).join('\n'));
    await useBackend('wasm');
    const sickTok = charTokenizer(sick.join(''));
    const home = path.join(tmpRoot, 'home-gate');
    const gpt = tinyChatModel(sickTok.vocabSize, { blockSize: 160 });
    await saveModelFiles(path.join(tmpRoot, 'gate-base'), gpt, sickTok, { source: 'pretrain' });
    gpt.dispose();
    const registry = new ModelRegistry(home);
    await registry.register(path.join(tmpRoot, 'gate-base'), { source: 'pretrain', promote: true });
    const stage = (run: string, params: Record<string, string>) =>
      runSftStage({ params: { docs: docsDir, questions: qFile, generate: 'false', batchSize: '4', answerTokens: '6', k: '1', evalInterval: '100', ...params }, home, ...stageServices(home), runDir: path.join(home, 'runs', run), resume: false, signal: new AbortController().signal, progress: () => {}, log: () => {} });

    const beats = await stage('1-sft', { maxIters: '40', rank: '4', alpha: '8', targets: 'all', learningRate: '0.01', warmupIters: '2', dropout: '0' });
    expect(beats.gate).toEqual({ passed: true, reasons: [expect.stringMatching(/^The fine-tuned model beats its base on the 2 held-out questions: f1 0\.0% → [1-9]\d*\.\d%\.$/)] });
    expect(beats.modelVersion).toBe('v2');
    expect(beats.metrics!.f1).toBeGreaterThan(beats.metrics!.baseF1!);
    expect(beats.metrics!.containsGold).toBeGreaterThanOrEqual(beats.metrics!.baseContainsGold!);
    // Registered, not promoted by the stage (the job runner's rule does that), its adapter kept with the version.
    expect(await registry.get('v2')).toMatchObject({ source: 'sft', parent: 'v1', serving: false });
    expect(existsSync(path.join(versionAdapterDir(registry, 'v2'), 'adapter.safetensors'))).toBe(true);
    const served = new ServedModels(registry);
    expect(await served.load('v2')).toMatchObject({ adapter: true, base: 'v1' });
    served.close();

    const fails = await stage('2-sft', { maxIters: '2', rank: '2' });
    expect(fails.gate!.passed).toBe(false);
    expect(fails.gate!.reasons.join(' ')).toMatch(/does NOT beat its base on the 2 held-out questions/);
    expect(fails.modelVersion).toBeUndefined();
    expect((await registry.list()).map((v) => v.version)).toEqual(['v1', 'v2']);
  }, 90_000);

  it('without held-out questions it registers the merged model and the adapter, but promotes nothing', async () => {
    const home = await homeWithBase('home-b');
    const r = await runSftJob({ ...quick, skipEval: true, name: 'hr-answers' }, { home, ...stageServices(home), runDir: path.join(home, 'runs', '2-sft') });
    expect(r.modelVersion).toBe('v2');
    expect(r.promoted).toBe(false);
    const registry = new ModelRegistry(home);
    expect(await registry.get('v2')).toMatchObject({ source: 'sft', parent: 'v1', serving: false });
    expect((await registry.serving())!.version).toBe('v1');
    const stored = await new AdapterStore(home).list();
    expect(stored.map((s) => s.name)).toEqual(['hr-answers']);
    expect(stored[0]!.config).toMatchObject({ r: 2, lora_alpha: 4, base: { version: 'v1' }, meta: { retrievalK: 2, answerTokens: 6, decoding: 'free', prompt: {} } });
    // The bot can load the stored adapter over the serving base.
    const set = new AdapterSet((await registry.loadServing())!);
    const info = await set.load('hr-answers', stored[0]!.dir);
    expect(info.share).toBeLessThan(0.05);
    expect(set.use('hr-answers')).toBeInstanceOf(LoadedModel);
    set.dispose();
  });

  it('a stopped job resumes from its checkpoint with the examples it encoded', async () => {
    const home = await homeWithBase('home-d');
    const runDir = path.join(home, 'runs', '4-sft');
    const controller = new AbortController();
    const stopped = await runSftJob({ ...quick, maxIters: 4, skipEval: true }, { home, ...stageServices(home), runDir, signal: controller.signal, progress: (e) => e.stage === 'sft' && e.step === 2 && controller.abort() });
    expect(stopped.status).toBe('aborted');
    expect(stopped.summary).toMatch(/stopped at step 2/);
    const resumed = await runSftJob({ ...quick, maxIters: 4, skipEval: true }, { home, ...stageServices(home), runDir });
    expect(resumed.status).toBe('completed');
    expect(resumed.training.resumedFrom).toBe(2);
    expect(resumed.training.examples).toEqual(stopped.training.examples);
  });

  it('runs as a training job in a worker thread (kind "sft")', async () => {
    const home = await homeWithBase('home-c');
    const store = new SqliteStore(path.join(home, 'teamllm.db'));
    const runner = new JobRunner({ store, home, stages: { sft: TRAINING_STAGES.sft! }, logger: silentLogger, persistEveryMs: 0 });
    await runner.init();
    await runner.enqueue('sft', { docs: docsDir, questions: questionsFile, maxIters: '2', batchSize: '4', rank: '2', skipEval: 'true', name: 'from-job' }, 'console:admin');
    await runner.enqueue('sft', { nonsense: '1' }, 'console:admin');
    await runner.idle();
    const [first, second] = [(await store.getJob(1))!, (await store.getJob(2))!];
    expect(first.error).toBeUndefined();
    expect(first).toMatchObject({ status: 'succeeded', result: { modelVersion: 'v2' } });
    expect(String(first.result!.summary)).toMatch(/registered v2 and adapter "from-job", not promoted/);
    expect(first.result!.metrics).toMatchObject({ steps: 2 });
    expect(second.status).toBe('failed');
    expect(second.error).toMatch(/sft: unknown parameter nonsense/);
    await runner.close();
    store.close?.();
  }, 120_000);

  it('/train sft with no arguments learns the documents of the knowledge base, and gates on questions of held-out passages', async () => {
    const home = await homeWithBase('home-kb');
    // The knowledge base the bot answers from: the two leave documents (not the sample handbook, not a corpus).
    const kb = new LocalKnowledgeBase(knowledgeBaseFile(home));
    await kb.addPaths([docsDir]);
    const kbSources = (await kb.list()).map((s) => s.source);
    expect(kbSources).toEqual(['en/leave.md', 'zh/leave.md']);
    kb.close();
    const store = new SqliteStore(path.join(home, 'teamllm.db'));
    const runner = new JobRunner({ store, home, stages: { sft: TRAINING_STAGES.sft! }, logger: silentLogger, persistEveryMs: 0 });
    await runner.init();
    // What the bot's `/train sft` (no arguments) enqueues.
    await runner.enqueue('sft', {}, 'slack:UADMIN');
    await runner.idle();
    const job = (await store.getJob(1))!;
    expect(job.error).toBeUndefined();
    expect(job.status).toBe('succeeded');
    const runDir = path.dirname(String((job.result!.files as Record<string, string>).report));
    const read = async (name: string) => (await fs.readFile(path.join(runDir, 'data', name), 'utf8')).split('\n').filter(Boolean).map((l) => JSON.parse(l) as Record<string, unknown>);
    const examples = await read('examples.jsonl');
    const heldOut = await read('held-out.jsonl');
    // The dataset it trained on: questions generated from the knowledge base's passages, from both of its documents.
    expect(examples.length).toBeGreaterThan(5);
    expect(examples.every((e) => e.format === 'generated')).toBe(true);
    expect(new Set(examples.map((e) => String(e.passage).split('#')[0]))).toEqual(new Set(kbSources));
    expect(examples.every((e) => (e.sources as string[]).length > 0 && (e.sources as string[]).every((s) => kbSources.includes(s)))).toBe(true);
    expect(examples.some((e) => e.question === 'Carried-over days expire on what date of that year?' && e.answer === '1 July') || heldOut.some((q) => q.answer === '1 July')).toBe(true);
    // Its gate: generated questions of passages it did not train on, asked before and after.
    expect(heldOut.length).toBeGreaterThan(0);
    const held = new Set(heldOut.map((q) => q.passage));
    expect(examples.some((e) => held.has(e.passage))).toBe(false);
    expect(job.result!.metrics).toMatchObject({ baseF1: expect.any(Number), f1: expect.any(Number) });
    expect(String(job.result!.summary)).toMatch(new RegExp(`on the ${heldOut.length} held-out questions`));
    await runner.close();
    store.close?.();
  }, 120_000);
});
