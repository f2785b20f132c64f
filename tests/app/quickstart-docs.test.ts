/**
 * `teamllm quickstart --docs DIR [--questions FILE]` (TEAMLLM_QUICKSTART_DOCS / _QUESTIONS): the
 * first-start pipeline on a company's own documents, on a tiny recipe whose gate runs.
 */
import { existsSync, mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { loadConfig } from '../../src/app/config.ts';
import { QUICKSTART_RECIPES, quickstartInputs, quickstartKey, quickstartNeeded, runQuickstart, type QuickstartRecipe } from '../../src/app/quickstart.ts';
import { loadSampleKnowledgeBase } from '../../src/app/sample-kb.ts';
import { silentLogger } from '../../src/core/index.ts';
import { ModelRegistry } from '../../src/model/registry.ts';
import { knowledgeBaseFile, LocalKnowledgeBase } from '../../src/rag/index.ts';

/** The tiny recipe with its before/after QA gate on (the quickstart's rule decides what serves). */
const tinyGate: QuickstartRecipe = { ...QUICKSTART_RECIPES.tiny!, name: 'tiny-gate', sft: { ...QUICKSTART_RECIPES.tiny!.sft, skipEval: false, generateMax: 80 } };

const LEAVE = `# Leave

## Annual leave

- Everyone gets **25 days** of annual leave per year.
- You may carry over at most 5 days into the next year. Carried-over days expire on 1 July.

## Sick leave

Report sick to your manager before 09:30 on the first day. A doctor's note is needed after 3 days.
`;
const IT = `Laptops are replaced every 4 years.
A stolen laptop must be reported within 1 hour.
The guest Wi-Fi password changes every Monday.
`;
const PARKING = `<html><head><title>Parking</title></head><body><h1>Parking</h1><p>A parking permit costs €40 per month.</p>
<h2>Bikes</h2><p>Bike racks are on level 2. The bike room opens at 07:00.</p></body></html>`;
const TRAVEL = `# Travel

## Booking

Trains are booked through **TripDesk**. Book at least 14 days before the trip.

## Hotels

Hotels cost at most €150 per night in Berlin and €120 per night elsewhere.
`;

function companyDocs(): string {
  const dir = mkdtempSync(join(tmpdir(), 'teamllm-company-docs-'));
  mkdirSync(join(dir, 'policies'));
  writeFileSync(join(dir, 'leave.md'), LEAVE);
  writeFileSync(join(dir, 'it-faq.txt'), IT);
  writeFileSync(join(dir, 'parking.html'), PARKING);
  writeFileSync(join(dir, 'policies', 'travel.md'), TRAVEL);
  writeFileSync(join(dir, '.hidden.md'), '# Hidden\n\nNot a document of the company.\n');
  return dir;
}
const DOC_SOURCES = ['it-faq.txt', 'leave.md', 'parking.html', 'policies/travel.md'];

const readJsonl = (file: string) =>
  readFileSync(file, 'utf8')
    .split('\n')
    .filter(Boolean)
    .map((l) => JSON.parse(l) as Record<string, unknown>);

async function kbSources(home: string): Promise<string[]> {
  const kb = new LocalKnowledgeBase(knowledgeBaseFile(home));
  try {
    return (await kb.list()).map((s) => s.source).sort();
  } finally {
    kb.close();
  }
}

describe('quickstart on a company\'s own documents', () => {
  it('trains on exactly those documents, gates on generated questions of held-out passages, and serve keeps them until they change', async () => {
    const docs = companyDocs();
    const home = mkdtempSync(join(tmpdir(), 'teamllm-qs-docs-'));
    const config = loadConfig({ env: { TEAMLLM_HOME: home, TEAMLLM_QUICKSTART_DOCS: docs }, cwd: home });
    expect(config.sampleKnowledgeBase).toBe(false);
    const logs: string[] = [];
    const outcome = await runQuickstart({ config, logger: silentLogger, recipe: tinyGate, reporter: { stage() {}, progress() {}, done: (_n, line) => void logs.push(line), log: (l) => void logs.push(l) } });
    if (!outcome.ran) throw new Error(`expected a run: ${outcome.reason}`);

    // A model of its own serves, and the knowledge base holds exactly the company's documents.
    const registry = new ModelRegistry(home);
    const serving = (await registry.serving())!;
    expect([outcome.state.modelVersion, outcome.state.baseVersion]).toContain(serving.version);
    expect(outcome.state.inputs).toEqual({ docs: [docs], docsBase: docs, sample: false });
    expect(await kbSources(home)).toEqual(DOC_SOURCES);
    // The sample handbook is not added later either (the runtime's first-start loading).
    const kb = new LocalKnowledgeBase(knowledgeBaseFile(home));
    expect(await loadSampleKnowledgeBase(kb, home, silentLogger)).toBeUndefined();
    kb.close();

    // The gate: generated questions of passages nothing was trained on.
    const sftDir = join(home, 'quickstart', outcome.state.key, 'sft');
    const heldOut = readJsonl(join(sftDir, 'data', 'held-out.jsonl'));
    expect(heldOut.length).toBeGreaterThan(0);
    expect(heldOut.every((q) => q.split === 'held-out' && DOC_SOURCES.includes(String(q.source)))).toBe(true);
    const examples = readJsonl(join(sftDir, 'data', 'examples.jsonl'));
    expect(examples.length).toBeGreaterThan(0);
    const heldPassages = new Set(heldOut.map((q) => q.passage));
    const heldQuestions = new Set(heldOut.map((q) => q.question));
    expect(examples.every((e) => e.format === 'generated' && typeof e.passage === 'string')).toBe(true);
    expect(examples.filter((e) => heldPassages.has(e.passage) || heldQuestions.has(e.question))).toEqual([]);
    // Questions (trained on or held out) come from every document, and contexts only from them.
    expect(new Set([...examples, ...heldOut].map((e) => String(e.passage).split('#')[0]))).toEqual(new Set(DOC_SOURCES));
    expect(examples.every((e) => (e.sources as string[]).every((s) => DOC_SOURCES.includes(s)))).toBe(true);
    const before = JSON.parse(readFileSync(join(sftDir, 'qa-before.json'), 'utf8')) as { n: number; items: { question: string }[] };
    expect(before.items.map((i) => i.question)).toEqual(heldOut.map((q) => q.question));
    expect(readFileSync(join(sftDir, 'report.txt'), 'utf8')).toMatch(/Held-out QA, extractive decoding/);
    expect(logs.some((l) => /\d+ of held-out passages left out for the gate/.test(l))).toBe(true);
    expect(logs.some((l) => /4 added, 0 updated, 0 unchanged: 4 documents in the knowledge base/.test(l))).toBe(true);

    // `serve` without TEAMLLM_QUICKSTART_DOCS keeps these documents: cached, nothing to train.
    const plain = loadConfig({ env: { TEAMLLM_HOME: home }, cwd: home });
    const inputs = await quickstartInputs(plain);
    expect(inputs).toEqual(outcome.state.inputs);
    expect(await quickstartNeeded(plain, await quickstartKey(tinyGate, inputs))).toMatchObject({ needed: false, reason: expect.stringContaining('cached') });
    expect(await runQuickstart({ config: plain, logger: silentLogger, recipe: tinyGate })).toMatchObject({ ran: false });

    // A changed document is another key: the next start trains again, and the knowledge base follows.
    writeFileSync(join(docs, 'it-faq.txt'), `${IT}Printers are on every floor.\n`);
    const changedKey = await quickstartKey(tinyGate, inputs);
    expect(changedKey).not.toBe(outcome.state.key);
    expect(await quickstartNeeded(plain, changedKey)).toMatchObject({ needed: true });
    const again = await runQuickstart({ config: plain, logger: silentLogger, recipe: tinyGate, reporter: { stage() {}, progress() {}, done: (_n, line) => void logs.push(line), log() {} } });
    expect(again).toMatchObject({ ran: true, state: { key: changedKey } });
    expect(logs.at(-1)).toMatch(/0 added, 1 updated, 3 unchanged/);
    expect(await kbSources(home)).toEqual(DOC_SOURCES);
  }, 120_000);

  it('replaces the sample handbook a data folder already had, and gates on the given questions (test split, must_contain, no unanswerable)', async () => {
    const docs = companyDocs();
    const home = mkdtempSync(join(tmpdir(), 'teamllm-qs-docs-q-'));
    // This data folder started with the sample handbook in its knowledge base.
    const first = new LocalKnowledgeBase(knowledgeBaseFile(home));
    expect(await loadSampleKnowledgeBase(first, home, silentLogger)).toBeGreaterThan(0);
    first.close();
    const questions = join(docs, '..', `${docs.split('/').at(-1)}-questions.jsonl`);
    const rows = [
      { id: 'q1', question: 'How much does parking cost?', answer: 'A parking permit costs €40 per month.', must_contain: ['€40 per month'], source: 'parking.html', split: 'test' },
      { id: 'q2', question: 'How long do I have to report a stolen laptop?', answer: '1 hour', source: 'it-faq.txt', split: 'test' },
      { id: 'q3', question: 'Is there a gym in the office?', answer: 'UNANSWERABLE', must_contain: [], source: '', split: 'test' },
      { id: 'q4', question: 'When do carried-over days expire?', answer: 'Carried-over days expire on 1 July.', must_contain: ['1 July'], source: 'leave.md', split: 'dev' },
    ];
    writeFileSync(questions, rows.map((r) => JSON.stringify(r)).join('\n'));
    const config = loadConfig({ env: { TEAMLLM_HOME: home, TEAMLLM_QUICKSTART_DOCS: docs, TEAMLLM_QUICKSTART_QUESTIONS: questions }, cwd: home });
    const logs: string[] = [];
    const outcome = await runQuickstart({ config, logger: silentLogger, recipe: tinyGate, reporter: { stage() {}, progress() {}, done: (_n, line) => void logs.push(line), log: (l) => void logs.push(l) } });
    if (!outcome.ran) throw new Error(`expected a run: ${outcome.reason}`);
    expect(outcome.state.inputs).toMatchObject({ questions, sample: false });

    // Only the company's documents are left: the sample's were removed.
    expect(await kbSources(home)).toEqual(DOC_SOURCES);
    expect(logs.some((l) => /sample documents removed: 4 documents in the knowledge base/.test(l))).toBe(true);

    // The gate asked the test split's answerable questions, with must_contain as the gold fact.
    const sftDir = join(home, 'quickstart', outcome.state.key, 'sft');
    const before = JSON.parse(readFileSync(join(sftDir, 'qa-before.json'), 'utf8')) as { n: number; items: { id: string; gold: string }[] };
    expect(before.items.map((i) => [i.id, i.gold])).toEqual([
      ['q1', '€40 per month'],
      ['q2', '1 hour'],
    ]);
    expect(readJsonl(join(sftDir, 'data', 'held-out.jsonl')).map((q) => q.id)).toEqual(['q1', 'q2']);
    expect(logs.some((l) => /1 unanswerable questions of .* left out of the QA evaluation/.test(l))).toBe(true);
    // No generated question is held out when a question set is given, in SFT or in pretraining.
    expect(logs.some((l) => /held-out passages/.test(l))).toBe(false);
    const examples = readJsonl(join(sftDir, 'data', 'examples.jsonl'));
    expect(examples.some((e) => e.format === 'generated')).toBe(true);
    expect(examples.some((e) => e.question === 'How much does parking cost?')).toBe(false);
    expect(existsSync(join(home, 'kb', 'sample-loaded'))).toBe(true);
  }, 120_000);
});
