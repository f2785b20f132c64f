import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { answerConstraint, answerGeneration, answerSettings } from '../../src/model/answer-settings.ts';
import { qaPromptMessages } from '../../src/rag/qa-prompt-messages.ts';
import { loadConfig } from '../../src/app/config.ts';
import { QUICKSTART_RECIPES, quickstartKey, quickstartNeeded, resolveRecipe, runQuickstart, sampleInputs, type QuickstartReporter, type QuickstartStage } from '../../src/app/quickstart.ts';
import { silentLogger } from '../../src/core/index.ts';
import { LocalChatModel, toTemplate } from '../../src/model/langchain-chat-model.ts';
import { ModelRegistry } from '../../src/model/registry.ts';
import { encodeQaPrompt, formatContext } from '../../src/model/qa-prompt.ts';
import { HumanMessage, SystemMessage } from '@langchain/core/messages';

const tiny = QUICKSTART_RECIPES.tiny!;
/** The tiny recipe with the encoder stage on (5 steps): every stage runs. */
const tinyAll = { ...tiny, embeddings: true };

function recorder(abortAt?: { stage: string; step: number; controller: AbortController }) {
  const stages: { name: QuickstartStage; cached: boolean }[] = [];
  const logs: string[] = [];
  const progress: string[] = [];
  const reporter: QuickstartReporter = {
    stage: (name, cached) => void stages.push({ name, cached }),
    progress: (p) => {
      progress.push(p.stage);
      if (abortAt && p.stage === abortAt.stage && p.step >= abortAt.step) abortAt.controller.abort();
    },
    done: () => {},
    log: (line) => void logs.push(line),
  };
  return { reporter, stages, logs, progress };
}

describe('quickstart', () => {
  it('resolves recipes by name or from a file of overrides, and names what is wrong', () => {
    expect(resolveRecipe(undefined)).toBe(QUICKSTART_RECIPES.default);
    expect(resolveRecipe('tiny')).toBe(tiny);
    const dir = mkdtempSync(join(tmpdir(), 'teamllm-recipe-'));
    writeFileSync(join(dir, 'r.yaml'), 'extends: tiny\npretrain:\n  maxIters: 7\n');
    const r = resolveRecipe('r.yaml', dir);
    expect(r.pretrain.maxIters).toBe(7);
    expect(r.pretrain.nEmbd).toBe(tiny.pretrain.nEmbd);
    writeFileSync(join(dir, 'bad.yaml'), 'pretrain:\n  maxIter: 7\n');
    expect(() => resolveRecipe('bad.yaml', dir)).toThrow(/pretrain.*maxIter/);
    expect(() => resolveRecipe('nonsense', dir)).toThrow(/neither a recipe \(default, tiny\) nor a file/);
  });

  it('keys the cache on the recipe and the documents', async () => {
    const inputs = sampleInputs();
    const a = await quickstartKey(tiny, inputs);
    expect(await quickstartKey({ ...tiny, name: 'renamed' }, inputs)).toBe(a);
    expect(await quickstartKey({ ...tiny, pretrain: { ...tiny.pretrain, maxIters: 5 } }, inputs)).not.toBe(a);
    expect(await quickstartKey(tiny, { ...inputs, docs: [inputs.docs[0]!] })).not.toBe(a);
  });

  it('trains every stage, serves the result, skips when cached, resumes after a crash, and leaves a foreign model alone', async () => {
    const home = mkdtempSync(join(tmpdir(), 'teamllm-qs-'));
    const config = loadConfig({ env: { TEAMLLM_HOME: home }, cwd: home });

    // A crash (here: a stop) in the middle of pretraining...
    const controller = new AbortController();
    const first = recorder({ stage: 'pretrain', step: 2, controller });
    await expect(runQuickstart({ config, logger: silentLogger, recipe: tinyAll, reporter: first.reporter, signal: controller.signal })).rejects.toThrow(/stopped during pretraining at step 2/);
    expect(await new ModelRegistry(home).list()).toEqual([]);

    // ...is resumed from its checkpoint on the next start; then every stage runs.
    const second = recorder();
    const outcome = await runQuickstart({ config, logger: silentLogger, recipe: tinyAll, reporter: second.reporter });
    expect(second.stages).toEqual([
      { name: 'tokenizer', cached: true },
      { name: 'pretrain', cached: false },
      { name: 'sft', cached: false },
      { name: 'ingest', cached: false },
    ]);
    expect(second.logs.some((l) => /resuming .* from step 2/.test(l))).toBe(true);
    expect(new Set(second.progress)).toEqual(new Set(['pretrain', 'evaluate', 'sft', 'encoder']));
    if (!outcome.ran) throw new Error('expected a run');
    const registry = new ModelRegistry(home);
    expect(outcome.state.modelVersion).toBe('v2');
    expect((await registry.serving())?.version).toBe('v2');
    expect((await registry.get('v1'))?.source).toBe('pretrain');

    // Cached: nothing to do; no stage starts, not even a cached one, and no version is added.
    const versions = (await registry.list()).map((v) => v.version);
    const third = recorder();
    const again = await runQuickstart({ config, logger: silentLogger, recipe: tinyAll, reporter: third.reporter });
    expect(again).toEqual({ ran: false, reason: expect.stringContaining('cached (v2)') });
    expect(third).toMatchObject({ stages: [], logs: [], progress: [] });
    expect((await registry.list()).map((v) => v.version)).toEqual(versions);

    // Opted out, or someone else's model serving: never trains.
    const off = loadConfig({ env: { TEAMLLM_HOME: home, TEAMLLM_QUICKSTART: 'off' }, cwd: home });
    expect(await quickstartNeeded(off, 'another-key')).toMatchObject({ needed: false, reason: 'TEAMLLM_QUICKSTART=off' });
    expect(await quickstartNeeded(config, 'another-key')).toMatchObject({ needed: true, reason: 'the recipe or the documents changed' });
    await registry.promote('v1');
    expect(await quickstartNeeded(config, 'another-key')).toMatchObject({ needed: false, reason: expect.stringContaining('model v1 is serving') });

    // The bot prompts the trained model exactly as the QA evaluation did.
    await registry.promote('v2');
    const served = (await registry.loadServing())!;
    const settings = answerSettings(served);
    expect(settings).toMatchObject({ passages: tiny.sft.k, maxTokens: tiny.sft.answerTokens, maxContextTokens: tiny.sft.maxContextTokens, decoding: 'extractive', fromModel: true });
    const passages = [
      { source: 'en/leave.md', title: 'Leave', text: 'Annual leave is 25 days.\nCarried-over days expire on 1 July.\nSick leave needs a note after 3 days.' },
      { source: 'en/it.md', title: 'IT', text: 'Guests use the Harbor-Guest network; the password changes every Monday.' },
    ];
    const question = 'When do carried-over days expire?';
    const { messages, context } = toTemplate(qaPromptMessages(served, settings)({ question, history: [], documents: passages.map((p) => ({ ...p, score: 1 })) }));
    const bot = served.encodeChat(messages, { ...(context.length ? { context } : {}), reserve: settings.maxTokens });
    const evaluated = encodeQaPrompt(served.tokenizer, { question, passages }, { blockSize: served.blockSize, reserve: settings.maxTokens, maxContextTokens: settings.maxContextTokens! });
    expect(bot).toEqual(evaluated);
    // ... and decodes as it did: extractive (the recipe's setting), a span of the passages. (The
    // tiny recipe's prompt has no room for context, so a short one is given here.)
    const constrain = answerConstraint(served, settings)!;
    expect(constrain(bot)).toBeUndefined(); // no context in the prompt: nothing to copy, decoded freely
    const ctx = formatContext([{ title: 'Leave', text: 'Days expire on 1 July.' }]);
    const answer = await new LocalChatModel({ model: served, generation: { ...answerGeneration(settings), maxTokens: 12 }, constrain }).invoke([
      new SystemMessage({ content: ctx, name: 'context' }),
      new HumanMessage(question),
    ]);
    const text = String(answer.content).trim();
    expect(text.length).toBeGreaterThan(0);
    expect('Days expire on 1 July.').toContain(text);
    expect(answerConstraint(served, { decoding: 'free' })).toBeUndefined();
    served.dispose();
  }, 60_000);
});
