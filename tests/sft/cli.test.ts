import { execFile } from 'node:child_process';
import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterAll, describe, expect, it } from 'vitest';
import { tf, useBackend } from '../model/helpers.ts';
import { Random } from '../../src/model/random.ts';
import { saveModelFiles } from '../../src/model/model-files.ts';
import { ModelRegistry } from '../../src/model/registry.ts';
import { AdapterStore, LoraAdapter, attachAdapterToVersion } from '../../src/model/lora/index.ts';
import { LocalKnowledgeBase } from '../../src/rag/index.ts';
import { evalQa, type EvalQaOptions } from '../../src/app/eval-qa.ts';
import { charTokenizer, tinyChatModel, HANDBOOK_EN } from './helpers.ts';

const run = promisify(execFile);
const BIN = path.join(import.meta.dirname, '../../bin/teamllm.js');
const tmpRoot = await fs.mkdtemp(path.join(os.tmpdir(), 'teamllm-sft-cli-'));
afterAll(() => fs.rm(tmpRoot, { recursive: true, force: true }));

/** The CLI in a child process; the environment is passed per call. */
async function teamllm(home: string, args: string[]) {
  const env = { ...process.env, TEAMLLM_HOME: home, TEAMLLM_SAMPLE_KB: 'false', TEAMLLM_QUICKSTART: 'off' };
  try {
    const { stdout, stderr } = await run(process.execPath, [BIN, ...args], { env, cwd: home });
    return { code: 0, stdout, stderr };
  } catch (err) {
    const e = err as { code: number; stdout: string; stderr: string };
    return { code: e.code, stdout: e.stdout, stderr: e.stderr };
  }
}

const questions = [
  { id: 'q1', question: 'Until when can I use carried-over days?', answer: '1 July', source: 'leave.md', split: 'train' },
  { id: 'q2', question: 'How many days can I carry over?', answer: '5 days', source: 'leave.md', split: 'test' },
  { id: 'q3', question: 'By what time must I report sick?', answer: '09:30', source: 'leave.md', split: 'test' },
];

/** A home with v1 (a base, serving) and v2 (a LoRA version of it, registered as the SFT job does), an adapter "tone" and a knowledge base. */
async function homeWithModels(home: string): Promise<{ qFile: string; kb: LocalKnowledgeBase }> {
  await fs.mkdir(home, { recursive: true });
  const qFile = path.join(home, 'questions.jsonl');
  await fs.writeFile(qFile, questions.map((q) => JSON.stringify(q)).join('\n'));
  await fs.writeFile(path.join(home, 'leave.md'), HANDBOOK_EN);
  await useBackend('cpu');
  const tok = charTokenizer(questions.map((q) => q.question).join(''));
  const base = tinyChatModel(tok.vocabSize, { blockSize: 160 });
  await saveModelFiles(path.join(home, 'tmp-base'), base, tok, { source: 'pretrain' });
  const registry = new ModelRegistry(home);
  await registry.register(path.join(home, 'tmp-base'), { source: 'pretrain', promote: true });
  const adapter = LoraAdapter.create(base, { rank: 2, alpha: 4 }, { version: 'v1', meta: { retrievalK: 2, answerTokens: 5 } });
  const rng = new Random(3);
  adapter.setParams(new Map(adapter.paramNames.map((n) => { const p = adapter.params.get(n)!; return [n, tf.keep(tf.tensor(rng.normalArray(p.size, 0.5), p.shape))]; })));
  await adapter.save(path.join(home, 'tmp-adapter'));
  await saveModelFiles(path.join(home, 'tmp-merged'), adapter.mergedModel(base), tok, { source: 'sft', lora: adapter.configFile() });
  await registry.register(path.join(home, 'tmp-merged'), { source: 'sft', parent: 'v1' });
  await attachAdapterToVersion(registry, 'v2', path.join(home, 'tmp-adapter'));
  await new AdapterStore(home).import('tone', path.join(home, 'tmp-adapter'));
  base.dispose();
  adapter.dispose();
  const kb = new LocalKnowledgeBase(path.join(home, 'kb-test.sqlite'));
  await kb.addPaths([path.join(home, 'leave.md')], { baseDir: home });
  return { qFile, kb };
}

type Report = Awaited<ReturnType<typeof evalQa>>;

describe('teamllm eval qa', () => {
  it('scores a model with retrieval in the loop, a fine-tuned one beside its base, an adapter over a version; clear errors', async () => {
    const home = path.join(tmpRoot, 'in-process');
    const { qFile, kb } = await homeWithModels(home);
    const lines: string[] = [];
    const opts = (o: Partial<EvalQaOptions>): EvalQaOptions => ({ home, kb, questions: qFile, out: (t) => lines.push(t), ...o });

    const plain = await evalQa(opts({ split: 'test', maxTokens: 4 }));
    expect(plain).toMatchObject({ k: 3, maxTokens: 4, split: 'test' });
    expect(plain.rows.map((r) => r.label)).toEqual(['v1']);
    expect(plain.rows[0]!.scores).toMatchObject({ n: 2, retrievalHit: 1 });
    expect(plain.rows[0]!.scores.items.map((i) => i.gold)).toEqual(['5 days', '09:30']);
    expect(plain.comparison).toBeUndefined();

    // v2 beside its base v1, both with the prompts v2 was fine-tuned with (k=2, 5 answer tokens).
    const tuned: Report = await evalQa(opts({ split: 'test', model: 'v2', json: true }));
    expect(tuned).toMatchObject({ k: 2, maxTokens: 5 });
    expect(tuned.rows.map((r) => r.label)).toEqual(['v1 (base)', 'v2 (fine-tuned)']);
    expect(tuned.comparison!.verdict).toMatch(/The fine-tuned model (beats|does NOT beat) its base on the 2 held-out questions/);
    expect(JSON.parse(lines.at(-1)!)).toMatchObject({ k: 2, rows: [{ label: 'v1 (base)' }, { label: 'v2 (fine-tuned)' }] });
    const answers = (r: Report, i: number) => r.rows[i]!.scores.items.map((x) => x.prediction);
    // The adapter changes the answers (its B is not zero).
    expect(answers(tuned, 1)).not.toEqual(answers(tuned, 0));
    expect((await evalQa(opts({ split: 'test', model: 'v2', compare: false }))).rows.map((r) => r.label)).toEqual(['v2 (fine-tuned)']);
    // Decoding: as the model is served (its meta names none: free), or --decoding; both rows alike.
    expect(tuned.decoding).toBe('free');
    const extractive = await evalQa(opts({ split: 'test', model: 'v2', decoding: 'extractive' }));
    expect(extractive.rows.map((r) => r.scores.decoding)).toEqual(['extractive', 'extractive']);
    expect(lines.at(-3)).toMatch(/extractive decoding/);
    // Where the prompt has passages, answers are spans of them (a prompt left without any, as q3's
    // here where none fits, is decoded freely).
    const withContext = extractive.rows.flatMap((r) => r.scores.items).filter((i) => i.goldInContext);
    expect(withContext.length).toBeGreaterThan(0);
    for (const item of withContext) expect(HANDBOOK_EN).toContain(item.prediction);
    expect(withContext.some((i) => i.prediction.length > 0)).toBe(true);
    await expect(evalQa(opts({ split: 'test', decoding: 'copy' }))).rejects.toThrow('--decoding must be extractive or free (got "copy")');

    // The same adapter from the adapter store over v1: the same answers as v2 serves.
    const adapter = await evalQa(opts({ split: 'test', model: 'v1', adapter: 'tone' }));
    expect(adapter.rows.map((r) => r.label)).toEqual(['v1', 'v1 + tone']);
    expect(answers(adapter, 1)).toEqual(answers(tuned, 1));

    await expect(evalQa(opts({ split: 'dev' }))).rejects.toThrow('no questions in split "dev" in');
    await expect(evalQa(opts({ split: 'dev' }))).rejects.toThrow('(splits: train, test)');
    await expect(evalQa(opts({ model: 'v9' }))).rejects.toThrow('no model version v9 (have v1, v2');
    await expect(evalQa(opts({ adapter: 'nope' }))).rejects.toThrow('no adapter "nope" in');
    await expect(evalQa(opts({ adapter: 'nope' }))).rejects.toThrow('(have tone)');
    await expect(evalQa(opts({ questions: path.join(home, 'missing.jsonl') }))).rejects.toThrow('no questions file');
    await expect(evalQa(opts({ home: path.join(tmpRoot, 'empty-home') }))).rejects.toThrow(/^no model is trained yet/);
    kb.close();
  }, 60_000);

  it('from the command line: a clear error with no model; the table before/after; train sft passes --base over --config', async () => {
    const empty = path.join(tmpRoot, 'cli-empty');
    const home = path.join(tmpRoot, 'cli');
    await fs.mkdir(empty, { recursive: true });
    const { qFile, kb } = await homeWithModels(home);
    kb.close();
    const config = path.join(empty, 'sft.yaml');
    await fs.writeFile(config, 'base: v8\nrank: 2\n');
    await fs.writeFile(path.join(empty, 'q.jsonl'), JSON.stringify(questions[0]));
    const [none, table, sft] = await Promise.all([
      teamllm(empty, ['eval', 'qa', '--questions', path.join(empty, 'q.jsonl'), '--decoding', 'extractive']),
      teamllm(home, ['kb', 'add', path.join(home, 'leave.md')]).then(() => teamllm(home, ['eval', 'qa', '--questions', qFile, '--split', 'test', '--model', 'v2', '--decoding', 'extractive'])),
      teamllm(empty, ['train', 'sft', '--config', config, '--base', 'v9']),
    ]);
    // The default: answers as users see them, the served answerer beside the no-model one.
    const [users, usersEmpty] = await Promise.all([
      teamllm(home, ['eval', 'qa', '--questions', qFile, '--split', 'test', '--model', 'v2', '--ablation']),
      teamllm(empty, ['eval', 'qa', '--questions', path.join(empty, 'q.jsonl')]),
    ]);
    expect(users.code).toBe(0);
    expect(users.stdout).toContain('2 questions (split "test")');
    expect(users.stdout).toMatch(/\| answerer \| gold fact in answer \| direct EM \|/);
    expect(users.stdout).toMatch(/^\| no model: retrieval-only quotes \| \d+\.\d% \(\d\/2\)/m);
    expect(users.stdout).toMatch(/^\| candidates, rules alone \(no learning\) \|/m);
    expect(users.stdout).toMatch(/^\| served: v2 \| \d+\.\d% \(\d\/2\)/m);
    expect(usersEmpty.code).toBe(0);
    expect(usersEmpty.stdout).toMatch(/^\| no model: retrieval-only quotes \|/m);
    expect(usersEmpty.stdout).toContain('No model version serves');
    expect(none.code).toBe(1);
    expect(none.stderr).toContain('teamllm: no model is trained yet');
    expect(none.stderr).not.toMatch(/\n\s+at /);
    expect(table.stderr).toBe('');
    expect(table.code).toBe(0);
    expect(table.stdout).toContain('2 questions (split "test")');
    expect(table.stdout).toContain('2 passages each from the knowledge base; answers of at most 5 tokens');
    expect(table.stdout).toMatch(/model +n +EM +F1 +contains/);
    expect(table.stdout).toMatch(/^v1 \(base\) +2 +\d+\.\d%/m);
    expect(table.stdout).toMatch(/^v2 \(fine-tuned\) +2 +\d+\.\d%/m);
    expect(table.stdout).toMatch(/The fine-tuned model (beats|does NOT beat) its base on the 2 held-out questions/);
    expect(sft.code).toBe(1);
    expect(`${sft.stdout}${sft.stderr}`).toMatch(/No model version v9/);
  }, 120_000);
});
