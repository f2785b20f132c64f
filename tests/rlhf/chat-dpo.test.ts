/**
 * DPO on an imported chat model (a tiny random-weight Qwen3 registered as `teamllm model import`
 * does): pairs in its own chat template with the log-probs summed over the assistant's tokens
 * only; the DPO loss's gradient w.r.t. the LoRA tensors against finite differences; DPO on a
 * simulated user's preferences (answers that say "yes") raises the preferred-answer rate of
 * sampled answers to held-out questions at a bounded KL to the base; a run stopped and resumed
 * ends with the adapter of an uninterrupted one.
 */
import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { tf, useBackend } from '../model/helpers.ts';
import { Random } from '../../src/model/random.ts';
import { ModelRegistry } from '../../src/model/registry.ts';
import { inspectHfChatModel } from '../../src/model/import/llama-checkpoint.ts';
import { loadChatModelVersion } from '../../src/model/import/chat-manifest.ts';
import { LoraAdapter } from '../../src/model/lora/adapter.ts';
import { trainableFromChatModel } from '../../src/model/lora/imported-base.ts';
import { encodeChatSftExample } from '../../src/training/sft/chat-data.ts';
import { chatEpisodes } from '../../src/training/rlhf/chat-episodes.ts';
import { evaluatePolicy } from '../../src/training/rlhf/evaluate.ts';
import { implicitMargin } from '../../src/training/rlhf/measure.ts';
import { dpoBatchLoss, trainOffline, type OfflineOptions, type PreferencePair } from '../../src/training/rlhf/offline.ts';
import { collateEpisodes, sequenceLogProbs, withoutAdapter } from '../../src/training/rlhf/policy.ts';
import type { RlhfPrompt } from '../../src/training/rlhf/episodes.ts';
import { tinyChatModel, writeHfChatFolder } from '../model/import/tiny-llama.ts';
import { NO, SAYS_YES, YES, prompt, yesOrNoSftVersion } from './chat-yes-no.ts';
import { SqliteStore } from '../../src/core/sqlite-store.ts';
import { SimulatedUsers } from '../../src/training/simulated-users.ts';
import { readPeftAdapter } from '../../src/model/lora/peft.ts';
import { runRlhfJob } from '../../src/training/rlhf/pipeline.ts';
import { stageServices } from '../../src/training/jobs/stage-services.ts';
import { expectAdapterGradientsMatch } from '../lora/adapter-gradients.ts';

const tmpRoot = await fs.mkdtemp(path.join(os.tmpdir(), 'teamllm-chat-dpo-'));
afterAll(() => fs.rm(tmpRoot, { recursive: true, force: true }));

await useBackend('wasm');
writeHfChatFolder(path.join(tmpRoot, 'qwen3'), tinyChatModel('qwen3', 7));
const registry = new ModelRegistry(path.join(tmpRoot, 'home'));
await registry.registerChatModel(inspectHfChatModel(path.join(tmpRoot, 'qwen3')));
const chat = loadChatModelVersion(registry.dir('v1'));
const codecOf = (vocabSize: number) => chatEpisodes(chat.tokenizer, { maxAnswerTokens: 8, maxTokens: 128, vocabSize });

// The simulated user likes answers that say "yes"; pairs: a yes-answer over a no-answer.
const pairOf = (i: number): PreferencePair => ({ prompt: prompt(i), chosen: YES[i % 3]!, rejected: NO[(i + 1) % 3]! });
const train = Array.from({ length: 40 }, (_, i) => pairOf(i));
const heldOut = Array.from({ length: 10 }, (_, i) => pairOf(100 + i));

// The policy DPO starts from, as in tests/rlhf: an SFT model that says yes or no about equally
// (a random-weight model says neither, and DPO only reweights what the policy already says).
// The SFT adapter is registered over v1 and loaded merged: v2 is the base DPO tunes.
const sftVersion = await yesOrNoSftVersion(registry, 'v1', tmpRoot);
const sftModel = loadChatModelVersion(registry.dir(sftVersion)).model;

const common = (model: OfflineOptions['model']): OfflineOptions => ({
  model,
  episodes: codecOf(model.config.vocabSize),
  algo: 'dpo',
  pairs: train,
  baseVersion: sftVersion,
  steps: 24,
  batchSize: 8,
  learningRate: 4e-4,
  beta: 0.5,
  lora: { rank: 4, alpha: 8, targets: 'all' },
  seed: 3,
});

describe('DPO on an imported chat model', () => {
  it("encodes a pair in the model's chat template: the served prompt, then the assistant's tokens and its end-of-turn token", () => {
    // The answerer's system message and passages take ~360 tokens: more than the tiny model's context, fine to encode.
    const codec = chatEpisodes(chat.tokenizer, { maxAnswerTokens: 8, maxTokens: 1024 });
    const p: RlhfPrompt = { question: 'Is it yes?', passages: [{ source: 'hr.md', title: 'Leave', text: 'Employees get twenty days.' }] };
    const e = codec.episode(p, 'yes, sure');
    const sft = encodeChatSftExample(chat.tokenizer, { messages: [{ role: 'user', content: p.question }, { role: 'assistant', content: 'yes, sure' }], context: p.passages }, { maxTokens: 512 })!;
    // The same ids as SFT's example, and the answer is exactly the tokens SFT puts its loss on.
    expect([...e.prompt, ...e.answer]).toEqual(Array.from(sft.ids.slice(0, e.prompt.length + e.answer.length)));
    expect(e.answer).toEqual(Array.from(sft.targets).filter((t) => t >= 0));
    expect(e.answer).toEqual([...chat.tokenizer.encodeText('yes, sure'), chat.tokenizer.idOf('<|im_end|>')!]);
    expect(codec.prompt(p)).toEqual(e.prompt);
    expect(chat.tokenizer.decode(e.prompt, { skipSpecial: false })).toMatch(/<\|im_start\|>user\nPassages:.*Question: Is it yes\?<\|im_end\|>\n<\|im_start\|>assistant\n$/s);
    // Cut to the answer budget; a prompt that does not fit is refused.
    expect(codec.episode(p, 'yes '.repeat(30)).answer).toHaveLength(8);
    expect(() => chatEpisodes(chat.tokenizer, { maxAnswerTokens: 8, maxTokens: 128 }).episode(p, 'yes')).toThrow(/do not fit 128 tokens/);
  });

  it("the DPO loss's gradient w.r.t. every LoRA tensor matches finite differences", () => {
    const model = trainableFromChatModel(chat.model);
    const codec = codecOf(model.config.vocabSize);
    const adapter = LoraAdapter.create(model, { rank: 2, alpha: 3, dropout: 0, targets: 'all' });
    const rng = new Random(21);
    adapter.setParams(new Map(adapter.paramNames.map((n) => [n, tf.keep(tf.tensor(rng.normalArray(adapter.params.get(n)!.size, 0.2), adapter.params.get(n)!.shape))] as [string, tf.Tensor])));
    adapter.attach(model);
    const pairs = train.slice(0, 3);
    const batch = collateEpisodes([...pairs.map((p) => codec.episode(p.prompt, p.chosen)), ...pairs.map((p) => codec.episode(p.prompt, p.rejected))], codec.pad);
    // The reference: the same model without the adapter.
    const ref = withoutAdapter(model, () => tf.tidy(() => Array.from(sequenceLogProbs(model, batch).dataSync())));
    const rc = tf.tensor1d(ref.slice(0, 3));
    const rr = tf.tensor1d(ref.slice(3));
    const names = adapter.paramNames;
    const lossOf = (ps: tf.Tensor[]) => dpoBatchLoss(model, batch, rc, rr, 1, new Map([...model.params, ...names.map((n, i) => [n, ps[i]!] as [string, tf.Tensor])])).loss;
    expect(expectAdapterGradientsMatch(adapter, lossOf, { h: 3e-3, rng })).toBeGreaterThan(0);
    [rc, rr, batch.x].forEach((t) => t.dispose());
    LoraAdapter.detach(model);
    adapter.dispose();
    model.dispose();
  });

  it('raises the held-out preferred-answer rate at a bounded KL; stopped and resumed == never interrupted', { timeout: 300_000 }, async () => {
    const model = trainableFromChatModel(sftModel);
    const codec = codecOf(model.config.vocabSize);
    const heldOutPrompts = heldOut.map((p) => p.prompt);
    const evaluate = () => evaluatePolicy(model, codec, heldOutPrompts, { taste: SAYS_YES, samplesPerPrompt: 8, seed: 9 });
    const before = await evaluate();
    expect(before.preferredRate).toBeGreaterThan(0.1); // the SFT policy says yes sometimes, no at other times
    expect(before.preferredRate).toBeLessThan(0.7);
    const whole = await trainOffline(common(model));
    expect(whole.status).toBe('completed');
    const after = await evaluate();
    const margin = implicitMargin(model, codec, { pairs: heldOut, votes: [] });
    const accuracy = heldOut.filter((p) => implicitMargin(model, codec, { pairs: [p], votes: [] }) > 0).length / heldOut.length;
    console.log(`DPO on the tiny Qwen3: preferred rate ${before.preferredRate.toFixed(3)} -> ${after.preferredRate.toFixed(3)}, KL ${after.kl.toFixed(3)} nats, held-out margin ${margin.toFixed(3)}, pair accuracy ${accuracy}, loss ${whole.history[0]!.loss.toFixed(3)} -> ${whole.history.at(-1)!.loss.toFixed(3)}`);
    expect(Math.abs(before.kl)).toBeLessThan(1e-5); // policy = reference before (LoRA's B = 0)
    expect(after.preferredRate).toBeGreaterThan(before.preferredRate + 0.3);
    expect(after.kl).toBeGreaterThan(0);
    expect(after.kl).toBeLessThan(5);
    expect(margin).toBeGreaterThan(0);
    expect(accuracy).toBe(1);
    const wholeParams = new Map([...whole.adapter.params].map(([n, t]) => [n, Array.from(t.dataSync())]));
    LoraAdapter.detach(model);
    whole.adapter.dispose();

    const runDir = path.join(tmpRoot, 'run-split');
    const controller = new AbortController();
    const first = await trainOffline({ ...common(model), runDir, checkpointInterval: 5, signal: controller.signal, onStep: (s) => void (s.step === 11 && controller.abort()) });
    expect(first.status).toBe('aborted');
    LoraAdapter.detach(model);
    first.adapter.dispose();
    const second = await trainOffline({ ...common(model), runDir, checkpointInterval: 5 });
    expect(second.resumedFrom).toBe(11);
    expect(second.history.map((s) => s.loss)).toEqual(whole.history.map((s) => s.loss));
    expect(new Map([...second.adapter.params].map(([n, t]) => [n, Array.from(t.dataSync())]))).toEqual(wholeParams);
    LoraAdapter.detach(model);
    second.adapter.dispose();
    model.dispose();
  });
});

describe('the rlhf job on an imported chat model (teamllm train rlhf --algo dpo --base <imported version>)', () => {
  const home = path.join(tmpRoot, 'job-home');
  const reg = new ModelRegistry(home);
  const docs = path.join(tmpRoot, 'job-docs');
  const questions = path.join(tmpRoot, 'job-questions.jsonl');
  beforeAll(async () => {
    const tiny = tinyChatModel('qwen3', 8);
    // A context long enough for the answerer's system message and passages (the QA check).
    const long = { ...tiny, hfConfig: { ...tiny.hfConfig, max_position_embeddings: 2048 }, config: { ...tiny.config, maxPositions: 2048 } };
    writeHfChatFolder(path.join(tmpRoot, 'qwen3-long'), long);
    await reg.registerChatModel(inspectHfChatModel(path.join(tmpRoot, 'qwen3-long')));
    await reg.promote('v1');
    // Users asked 30 questions; the bot answered each twice (yes and no), users voted by their taste.
    const store = new SqliteStore(path.join(home, 'teamllm.db'));
    const answers = [];
    for (let i = 0; i < 30; i++) {
      for (const [j, output] of [YES[i % 3]!, NO[i % 3]!].entries()) {
        answers.push(await store.saveAnswer({ platform: 'web', workspace: 't', channel: 'c', messageId: `${i}-${j}`, userId: `u${i % 4}`, question: prompt(i).question, passages: [], prompt: prompt(i).question, output, modelName: 'tiny', modelVersion: 'v1', latencyMs: 1 }));
      }
    }
    await new SimulatedUsers({ taste: SAYS_YES, noise: 0, seed: 2 }).rate(store, answers);
    await store.close();
    await fs.mkdir(docs, { recursive: true });
    await fs.writeFile(path.join(docs, 'leave.md'), '# Leave\n\nEmployees get twenty days of annual leave. Up to 5 days carry over.\n');
    await fs.writeFile(questions, JSON.stringify({ question: 'How many days can I carry over?', answer: '5 days', source: 'leave.md', split: 'test' }));
  });

  it('trains DPO from the users\' votes, measures and gates it, and registers the PEFT adapter over its base', { timeout: 300_000 }, async () => {
    const lines: string[] = [];
    const r = await runRlhfJob(
      { algo: 'dpo', base: 'v1', steps: 12, batchSize: 8, learningRate: 4e-4, beta: 0.5, rank: 4, alpha: 8, heldOutFraction: 0.3, evalSamples: 2, maxTokens: 8, docs: [docs], questions, k: 1, answerTokens: 4, seed: 3 },
      { home, ...stageServices(home), runDir: path.join(home, 'runs', '1-rlhf'), log: (l) => lines.push(l) },
    );
    expect(r.status).toBe('completed');
    expect(r.data.pairs).toBeGreaterThan(10);
    expect(r.data.heldOutPrompts).toBeGreaterThan(0);
    expect(r.before.rewardKind).toBe('implicit-margin');
    expect(r.before.reward).toBeCloseTo(0, 4); // policy = reference before training
    expect(r.after.reward).toBeGreaterThan(r.before.reward + 0.5); // held-out pairs: the liked answer gains on the disliked
    // This random model samples one token with certainty (entropy ~0), so the sampled KL stays ~0:
    // the KL that DPO moves is measured in the test above.
    expect(r.after.kl).toBeLessThan(2);
    expect(r.gate.passed).toBe(true);
    expect(r.gate.reasons.join('\n')).toMatch(/margin rose/);
    expect(r.gate.reasons.join('\n')).toMatch(/KL to the base v1 -?[\d.]+ ≤ bound 2/);
    // The QA check asked the engine through its template, before and after (the adapter merged).
    expect(r.before.qa?.n).toBe(1);
    expect(r.after.qa?.n).toBe(1);
    // A PEFT adapter registered over v1, served merged; the gate's verdict kept with it.
    const v = (await reg.get(r.modelVersion!))!;
    expect(v).toMatchObject({ kind: 'chat', parent: 'v1', source: 'rlhf', gate: { passed: r.gate.passed } });
    expect(loadChatModelVersion(reg.dir(v.version)).manifest.adapter).toEqual({ base: 'v1' });
    const peft = readPeftAdapter(r.files.adapter);
    expect(peft.config.rank).toBe(4);
    expect(lines.some((l) => /feedback: 60 rated answers/.test(l))).toBe(true);
    console.log(`the rlhf job (DPO) on the tiny Qwen3: held-out margin ${r.before.reward.toFixed(3)} -> ${r.after.reward.toFixed(3)}, KL ${r.after.kl.toFixed(3)}, gate ${r.gate.passed ? 'passed' : 'kept back'}: ${r.gate.reasons.join('; ')}`);
  });

  it('KTO from the single votes too; then DPO on the KTO version (an adapter on an adapter), registered as one adapter over v1', { timeout: 300_000 }, async () => {
    const common = { base: 'v1', steps: 8, batchSize: 8, learningRate: 4e-4, beta: 0.5, rank: 4, alpha: 8, heldOutFraction: 0.3, evalSamples: 1, maxTokens: 8, skipQa: true, seed: 3 };
    const r = await runRlhfJob({ ...common, algo: 'kto' }, { home, ...stageServices(home), runDir: path.join(home, 'runs', '2-rlhf') });
    expect(r.status).toBe('completed');
    expect(r.data.votes).toBeGreaterThan(20);
    expect(r.after.reward).toBeGreaterThan(r.before.reward + 0.1);
    expect((await reg.get(r.modelVersion!))!).toMatchObject({ kind: 'chat', parent: 'v1', source: 'rlhf' });
    // DPO whose base is the KTO adapter version: a fresh LoRA on v1 + KTO's adapter merged; one adapter of rank 4 + 4 over v1.
    const onAdapter = await runRlhfJob({ ...common, algo: 'dpo', base: r.modelVersion!, rank: 2, alpha: 4 }, { home, ...stageServices(home), runDir: path.join(home, 'runs', '4-rlhf') });
    expect(onAdapter.status).toBe('completed');
    expect(onAdapter.before.reward).toBeCloseTo(0, 4); // the reference is the KTO version itself
    expect(onAdapter.after.reward).toBeGreaterThan(onAdapter.before.reward);
    const v = (await reg.get(onAdapter.modelVersion!))!;
    expect(v).toMatchObject({ kind: 'chat', parent: r.modelVersion, source: 'rlhf' });
    expect(loadChatModelVersion(reg.dir(v.version)).manifest.adapter).toEqual({ base: 'v1' });
    expect(readPeftAdapter(reg.dir(v.version)).config).toMatchObject({ rank: 6, alpha: 12 });
  });

  it('a job stopped mid-run and resumed registers the adapter an uninterrupted job does', { timeout: 300_000 }, async () => {
    const params = { algo: 'dpo' as const, base: 'v1', steps: 8, batchSize: 8, learningRate: 4e-4, beta: 0.5, rank: 4, alpha: 8, heldOutFraction: 0.3, evalSamples: 1, maxTokens: 8, skipQa: true, seed: 4 };
    const whole = await runRlhfJob(params, { home, ...stageServices(home), runDir: path.join(home, 'runs', '5-rlhf') });
    const runDir = path.join(home, 'runs', '6-rlhf');
    const stop = new AbortController();
    await expect(
      runRlhfJob(params, { home, ...stageServices(home), runDir, signal: stop.signal, progress: (e) => void (e.stage === 'rlhf' && e.step === 5 && stop.abort()) }),
    ).rejects.toThrow(/stopped at step 5: checkpoint saved at step 5/);
    const resumed = await runRlhfJob(params, { home, ...stageServices(home), runDir });
    expect(resumed.status).toBe('completed');
    expect(resumed.after.reward).toBe(whole.after.reward);
    const tensors = (dir: string) => Object.fromEntries([...readPeftAdapter(dir).tensors].map(([n, t]) => [n, Array.from(t.data)]));
    expect(Object.keys(tensors(whole.files.adapter))).toHaveLength(2 * 4 * 2); // A and B of the default targets (q, k, v, o) in 2 layers
    expect(tensors(resumed.files.adapter)).toEqual(tensors(whole.files.adapter));
  });
});
