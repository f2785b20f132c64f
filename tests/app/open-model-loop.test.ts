/**
 * The whole loop on an imported model, driven from chat by an admin (issue 20's "must show"): a
 * tiny random-weight Qwen3 imported and serving; users ask, and vote through the chat's vote path
 * (simulated users who like answers that say "yes"); `/train sft` (an adapter version, promoted by
 * hand: SFT's gate here is skipped); more questions and votes, now on the SFT version; `/train
 * reward` (on the serving SFT version: an imported base); `/train rlhf --algo dpo` (an adapter on
 * the SFT adapter, registered as one PEFT adapter over the imported model), promoted by the job
 * runner's gate; the same questions answered by the new version, which says "yes" more often.
 */
import { mkdirSync, mkdtempSync, promises as fsp, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../../src/app/config.ts';
import { createRuntime, type Runtime } from '../../src/app/runtime.ts';
import { silentLogger } from '../../src/core/index.ts';
import { ModelRegistry } from '../../src/model/registry.ts';
import { loadChatModelVersion } from '../../src/model/import/chat-manifest.ts';
import { readPeftAdapter } from '../../src/model/lora/peft.ts';
import { llamaConfigFromHf } from '../../src/model/import/llama-config.ts';
import { currentRewardModel, readRewardConfig, rewardDir } from '../../src/training/reward/store.ts';
import { inspectHfChatModel } from '../../src/model/import/llama-checkpoint.ts';
import { exportChatModel } from '../../src/model/import/chat-export.ts';
import { sft } from '../../src/training/sft/train.ts';
import { message, RecordingTarget, waitFor } from '../helpers.ts';
import { tinyChatModel, writeHfChatFolder } from '../model/import/tiny-llama.ts';

const LIKES = (answer: string) => /\byes\b/i.test(answer);
const DOC = '# Annual leave\n\nEmployees get twenty days of annual leave per year. Unused days of annual leave can be carried over to the next year when a manager approves.\n';
// Two kinds of question: SFT teaches "yes" to the first, "no" to the second.
const question = (i: number) => (i % 2 ? `Can my manager approve ${i + 2} days of annual leave this year?` : `Can I carry over ${i + 2} days of annual leave to the next year?`);
const QUESTIONS = Array.from({ length: 24 }, (_, i) => question(i));
const YES = 'yes, you can.';
const NO = 'no, you cannot.';

let home: string;
let runtime: Runtime;
let registry: ModelRegistry;
let phase = 0;

beforeAll(async () => {
  home = mkdtempSync(join(tmpdir(), 'teamllm-open-loop-'));
  mkdirSync(join(home, 'docs'));
  writeFileSync(join(home, 'docs', 'leave.md'), DOC);
  // An untied head (a tied random model only repeats the prompt's last token) and room for the answerer's prompt.
  const tiny = tinyChatModel('llama', 9);
  const hfConfig = { ...tiny.hfConfig, max_position_embeddings: 640 };
  writeHfChatFolder(join(home, 'random', 'tiny-llama'), { ...tiny, hfConfig, config: llamaConfigFromHf(hfConfig) });
  const env = { TEAMLLM_HOME: home, TEAMLLM_ADMINS: 'slack:UADMIN', TEAMLLM_QUICKSTART: 'off', TEAMLLM_SAMPLE_KB: 'false', TEAMLLM_RATE_PER_MINUTE: '10000', TEAMLLM_RATE_BURST: '10000' };
  runtime = await createRuntime(loadConfig({ env, cwd: home }), { logger: silentLogger, startJobs: true, defaultMetrics: false });
  await runtime.kb.addPaths([join(home, 'docs')]);
  registry = new ModelRegistry(home);
  // The "download": the random model taught elsewhere (a scratch registry) to say no, exported merged as a Hugging Face folder.
  const scratch = new ModelRegistry(join(home, 'elsewhere'));
  await scratch.registerChatModel(inspectHfChatModel(join(home, 'random', 'tiny-llama')));
  const taught = await sft({ runDir: join(home, 'elsewhere', 'sft'), base: scratch.dir('v1'), baseVersion: 'v1', examples: await examples(200, 24, () => NO), lora: { rank: 4, alpha: 8, dropout: 0, targets: 'all' }, batchSize: 6, maxIters: 12, learningRate: 2e-2, warmupIters: 2, evalInterval: 100, checkpointInterval: 100, chartInterval: 100, valFraction: 0.1, seed: 4 });
  await scratch.registerChatAdapter(taught.adapterDir, 'v1', { source: 'sft' });
  await exportChatModel(scratch.dir('v2'), 'hf', join(home, 'downloads', 'tiny-llama-instruct'));
}, 120_000);

/** Examples laid out as the bot asks: the question with the passages it retrieves, then the answer. */
async function examples(from: number, n: number, answer: (i: number) => string) {
  return Promise.all(
    Array.from({ length: n }, async (_, i) => {
      const q = question(from + i);
      const context = (await runtime.kb.search(q, 3)).map((s) => ({ source: s.source, title: s.title, text: s.text }));
      return { messages: [{ role: 'user' as const, content: q }, { role: 'assistant' as const, content: answer(i) }], context };
    }),
  );
}

afterAll(async () => {
  await runtime?.close();
  await fsp.rm(home, { recursive: true, force: true });
});

/** An admin's command in chat; the text of every reply and update. */
async function admin(text: string): Promise<string[]> {
  const target = new RecordingTarget();
  await runtime.bot.handle(message({ text, user: { id: 'UADMIN' }, channel: `DADMIN${++phase}` }), target);
  await runtime.jobs.idle();
  // The job's last message is posted after the runner goes idle: on a loaded machine it can come later.
  if (text.startsWith('/train')) await waitFor(() => / — (?:succeeded|failed|stopped)/.test(target.events.map((e) => e.content.text).join('\n')), 60_000);
  return target.events.map((e) => e.content.text);
}

/** Users ask every question (each in a conversation of its own) and vote by their taste; the share of answers they liked. */
async function askAndVote(version: string): Promise<number> {
  phase += 1;
  let liked = 0;
  for (const [i, q] of QUESTIONS.entries()) {
    const user = `U${i % 5}`;
    const r = await runtime.bot.handle(message({ text: q, user: { id: user }, channel: `D${phase}-${i}` }), new RecordingTarget());
    expect(r.outcome).toBe('answered');
    const record = (await runtime.store.getAnswer(r.answerId!))!;
    expect(record.modelVersion).toBe(version);
    const likes = LIKES(record.output);
    liked += likes ? 1 : 0;
    const vote = await runtime.bot.vote({ answerId: r.answerId!, platform: 'slack', userId: user, value: likes ? 1 : -1 });
    expect(vote.ok).toBe(true);
  }
  return liked / QUESTIONS.length;
}

describe('the loop on an imported model, from chat', () => {
  it('sft, votes, reward, dpo promoted by its gate, answers from the new version', { timeout: 600_000 }, async () => {
    const t0 = performance.now();
    const times: string[] = [];
    const lap = (what: string) => times.push(`${what} ${((performance.now() - t0) / 1000).toFixed(0)} s`);
    expect(await runtime.models.importModel(join(home, 'downloads', 'tiny-llama-instruct'), { name: 'tiny-llama' }, { id: 'slack:UADMIN', isAdmin: true })).toMatch(/^Imported v1 "tiny-llama"/);
    expect((await admin('/model promote v1')).at(-1)).toMatch(/^Now answering with v1/);
    const rateV1 = await askAndVote('v1');
    expect(rateV1).toBe(0); // the instruct model says no
    lap('v1 answers');

    // SFT on the imported base: "yes" to carrying over, "no" to the manager's approval.
    writeFileSync(join(home, 'sft.jsonl'), `${(await examples(100, 40, (i) => (i % 2 ? NO : YES))).map((e) => JSON.stringify(e)).join('\n')}\n`);
    const sft = await admin(`/train sft base=v1 data=${join(home, 'sft.jsonl')} generate=false questions=none skipEval=true rank=4 alpha=8 targets=all maxIters=60 batchSize=6 learningRate=0.02 warmupIters=2 evalInterval=60 checkpointInterval=100 seed=5`);
    expect(sft.join('\n')).toMatch(/succeeded/);
    const v2 = (await registry.get('v2'))!;
    expect(v2).toMatchObject({ kind: 'chat', parent: 'v1', source: 'sft' });
    expect((await admin('/model promote v2')).at(-1)).toMatch(/^Now answering with v2/);
    lap('sft');
    const rateV2 = await askAndVote('v2');
    expect(rateV2).toBeGreaterThan(0); // some "yes" now: those questions make pairs with v1's "no"
    lap('v2 answers');

    // The reward model on the serving version (the SFT adapter over the imported model), by default.
    const reward = await admin('/train reward heldOut=0.5 minVotes=40 maxIters=10 batchSize=4 evalInterval=10 learningRate=0.01 rank=4 alpha=8 targets=all seed=3');
    expect(reward.join('\n')).toMatch(/Reward model "v2-reward-\d+" is now the one RLHF uses: .*vote AUC/);
    const rm = (await currentRewardModel(home))!;
    const rmConfig = await readRewardConfig(rewardDir(home, rm));
    expect(rmConfig).toMatchObject({ base: { version: 'v2' }, encoding: { template: 'chat' }, gate: { passed: true } });
    lap('reward');

    // DPO from the users' pairs (the SFT version's liked answer over the imported model's disliked one), `--algo` spelling.
    const dpo = await admin('/train rlhf --algo dpo skipQa=true steps=24 batchSize=8 learningRate=0.001 beta=0.5 rank=4 alpha=8 heldOutFraction=0.3 evalSamples=2 maxTokens=16 maxKl=5 seed=3');
    const dpoText = dpo.join("\n");
    expect(dpoText).toMatch(/succeeded/);
    const v3 = (await registry.get('v3'))!;
    expect(v3).toMatchObject({ kind: 'chat', parent: 'v2', source: 'rlhf', gate: { passed: true } });
    expect(loadChatModelVersion(registry.dir('v3')).manifest.adapter).toEqual({ base: 'v1' });
    expect(readPeftAdapter(registry.dir('v3')).config.rank).toBe(8); // SFT's rank 4 + DPO's rank 4, one adapter over v1
    expect((await registry.serving())?.version).toBe('v3');
    expect(runtime.bot.serving.model).toMatchObject({ version: 'v3' });

    lap('dpo');
    const rateV3 = await askAndVote('v3');
    lap('v3 answers');
    console.log(`the loop on a tiny imported Llama from chat: preferred-answer rate v1 ${rateV1.toFixed(2)} → SFT v2 ${rateV2.toFixed(2)} → DPO v3 ${rateV3.toFixed(2)}; reward model "${rm}" held-out AUC ${rmConfig.metrics.voteAuc?.toFixed(3)}; ${times.join(', ')}`);
    expect(dpoText).toMatch(/Evaluation gate: ✅ passed — reward \(v2-reward-\d+\) rose: .*KL to the base v2 [\d.]+ ≤ bound 5; the users' held-out votes agree/);
    expect(dpoText).toMatch(/Promoted v3 \(was v2; \/model rollback returns to it\): it passed the evaluation gate against v2/);
    expect(rateV3).toBeGreaterThan(rateV2 + 0.2);
  });
});
