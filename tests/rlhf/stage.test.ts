/**
 * The `rlhf` job end to end on a home with a serving model and rated answers: data from the
 * feedback store, before/after measures, curves, the gate, registration and promotion — and the
 * gate keeping a result back, with its reasons, when the KL bound is too tight.
 */
import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { useBackend } from '../model/helpers.ts';
import { ModelRegistry } from '../../src/model/registry.ts';
import { decidePromotion } from '../../src/app/job-promotion.ts';
import { runRlhfJob } from '../../src/training/rlhf/pipeline.ts';
import { runStage } from '../../src/training/stages/rlhf-stage.ts';
import { tasteReward } from '../../src/training/rlhf/taste-reward.ts';
import { toyQaQuestions, toyRetriever } from '../../src/training/rlhf/toy-world.ts';
import { QUOTES_SOURCE } from '../../src/training/simulated-users.ts';
import { ratedStore, toySetup, TOY_FIXTURE } from './helpers.ts';
import { stageServices } from '../../src/training/jobs/stage-services.ts';

await useBackend('wasm');
const home = await fs.mkdtemp(path.join(os.tmpdir(), 'teamllm-rlhf-home-'));
afterAll(() => fs.rm(home, { recursive: true, force: true }));
const setup = await toySetup();
// Users asked every question; the job holds some out by question.
const { store } = await ratedStore({ ...setup, questions: setup.questions.map((q) => ({ ...q, split: 'train' as const })) }, 10, path.join(home, 'teamllm.db'));
await store.close();
const registry = new ModelRegistry(home);
const v1 = await registry.register(TOY_FIXTURE, { source: 'sft', promote: true });
const questionsFile = path.join(home, 'questions.jsonl');
await fs.writeFile(questionsFile, toyQaQuestions(setup.questions).map((q) => JSON.stringify(q)).join('\n'));
const retriever = toyRetriever(setup.questions);
const common = { questions: questionsFile, heldOutFraction: 0.3, evalSamples: 4, maxTokens: 40, beta: 0.5, learningRate: 1e-3, seed: 3 };

describe('the rlhf job', () => {
  it('KTO from the store: measures, draws, passes the gate and registers a version the job runner will promote', async () => {
    const runDir = path.join(home, 'runs', '1-rlhf');
    const lines: string[] = [];
    const r = await runRlhfJob({ ...common, algo: 'kto', steps: 30, evalInterval: 15 }, { home, ...stageServices(home), runDir, retriever, log: (l) => lines.push(l) });
    expect(r.status).toBe('completed');
    expect(r.data.votes + r.data.heldOutPrompts).toBeGreaterThan(0);
    expect(r.data.heldOutPrompts).toBeGreaterThan(0);
    expect(r.before.rewardKind).toBe('implicit-margin'); // no reward model in this home
    expect(r.before.reward).toBeCloseTo(0, 5); // policy = reference before training
    expect(r.before.qa?.n).toBe(6);
    expect(r.after.reward).toBeGreaterThan(r.before.reward);
    expect(r.gate.reasons.join('\n')).toMatch(/rose/);
    expect(r.gate.passed).toBe(true);
    expect(r.modelVersion).toBe('v2');
    const v2 = await registry.get('v2');
    expect(v2).toMatchObject({ source: 'rlhf', parent: v1.version, serving: false, gate: { passed: true } });
    // Promotion is the job runner's rule: it would promote this one (trained from the serving v1).
    expect(decidePromotion({ result: { modelVersion: 'v2', gate: r.gate }, params: {}, parent: v2!.parent, serving: 'v1' }).promote).toBe(true);
    await registry.promote('v2');
    // Curves and logs.
    const png = await fs.readFile(r.files.chart);
    expect(png.subarray(1, 4).toString()).toBe('PNG');
    const metrics = (await fs.readFile(r.files.metrics, 'utf8')).trim().split('\n').map((l) => JSON.parse(l) as Record<string, number>);
    expect(metrics.filter((m) => 'loss' in m)).toHaveLength(30);
    expect(metrics.some((m) => 'eval_kl' in m && 'eval_entropy' in m && 'eval_reward' in m)).toBe(true);
    expect(await fs.readFile(r.files.report, 'utf8')).toMatch(/gate: PASSED/);
    expect(lines.some((l) => /feedback: 120 rated answers/.test(l))).toBe(true);
  }, 120_000);

  it('keeps a policy back when KL is over the bound, and says why', async () => {
    const runDir = path.join(home, 'runs', '2-rlhf');
    const r = await runRlhfJob({ ...common, algo: 'ppo', steps: 3, promptsPerStep: 2, samplesPerPrompt: 4, learningRate: 5e-3, maxKl: 1e-6, skipQa: true }, { home, ...stageServices(home), runDir, rewardModel: tasteReward(QUOTES_SOURCE) });
    expect(r.before.rewardKind).toBe('reward-model');
    expect(r.gate.passed).toBe(false);
    expect(r.gate.reasons.some((x) => /KL to the SFT policy .* is over the bound 0\.000001/.test(x))).toBe(true);
    expect(r.summary).toMatch(/kept back: .*KL to the SFT policy [\d.]+ is over the bound 0\.000001/);
    const decision = decidePromotion({ result: { modelVersion: r.modelVersion!, gate: r.gate }, params: {}, parent: 'v2', serving: 'v2' });
    expect(decision.promote).toBe(false);
    expect(decision.reason).toMatch(/did not pass the evaluation gate .*KL to the SFT policy/);
    expect((await registry.get(r.modelVersion!))?.gate?.passed).toBe(false);
    expect((await registry.serving())?.version).toBe('v2');
  }, 120_000);

  it('a stopped run saves and registers nothing', async () => {
    const stop = new AbortController();
    stop.abort();
    const before = (await registry.list()).length;
    await expect(runRlhfJob({ ...common, algo: 'kto', steps: 5, skipQa: true, evalSamples: 1 }, { home, ...stageServices(home), runDir: path.join(home, 'runs', '4-rlhf'), signal: stop.signal })).rejects.toThrow(/stopped at step 0: nothing was saved/);
    expect((await registry.list()).length).toBe(before);
  });

  it('refuses bad requests clearly', async () => {
    const ctx = { home, ...stageServices(home), runDir: path.join(home, 'runs', '3-rlhf'), resume: false, signal: new AbortController().signal, progress: () => {}, log: () => {} };
    await expect(runStage({ ...ctx, params: { algo: 'sac' } })).rejects.toThrow(/algo/);
    await expect(runStage({ ...ctx, params: { algo: 'kto', stepz: '3' } })).rejects.toThrow(/unknown parameter stepz/);
    // PPO without a reward model in the home.
    await expect(runStage({ ...ctx, params: { algo: 'ppo', skipQa: 'true' } })).rejects.toThrow(/PPO needs a usable reward model/);
  });
});
