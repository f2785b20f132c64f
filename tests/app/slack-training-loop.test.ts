import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../../src/app/config.ts';
import { createRuntime, startServer, type RunningServer, type Runtime } from '../../src/app/runtime.ts';
import { silentLogger } from '../../src/core/index.ts';
import { waitFor } from '../helpers.ts';
import { FakeSlack, type ApiCall } from '../slack/fake-slack.ts';
import { simulateFeedback, syntheticFacts } from '../../src/training/reward/simulated-feedback.ts';
import { SimulatedUsers } from '../../src/training/simulated-users.ts';
import { appMention, eventCallback, nowSec, slackSignature } from '../slack/harness.ts';

// The whole loop an admin runs from Slack, through Bolt against the local fake Slack: questions,
// votes, training jobs with their message updated in the thread, the loss curves uploaded there,
// promotion, an answer from the new version, rollback; non-admins refused.
const SECRET = 'training-loop-signing-secret';
let slack: FakeSlack;
let runtime: Runtime;
let server: RunningServer;
let questions: string;

beforeAll(async () => {
  slack = await FakeSlack.start();
  const home = mkdtempSync(join(tmpdir(), 'teamllm-slack-loop-'));
  // A few of the handbook's questions keep the before/after QA evaluation short: 6 held out, 12 to train on.
  const all = readFileSync(new URL('../../examples/handbook/questions.jsonl', import.meta.url), 'utf8').split('\n').filter(Boolean);
  const bySplit = (split: string) => all.filter((l) => (JSON.parse(l) as { split?: string }).split === split);
  questions = join(home, 'questions.jsonl');
  writeFileSync(questions, [...bySplit('test').slice(0, 6), ...all.filter((l) => (JSON.parse(l) as { split?: string }).split !== 'test').slice(0, 12)].join('\n') + '\n');
  const env = {
    TEAMLLM_HOME: home,
    TEAMLLM_ADMINS: 'slack:UADMIN',
    TEAMLLM_RATE_PER_MINUTE: '1000',
    TEAMLLM_RATE_BURST: '1000',
    SLACK_BOT_TOKEN: 'xoxb-training-loop',
    SLACK_SIGNING_SECRET: SECRET,
    SLACK_API_URL: slack.apiUrl,
  };
  runtime = await createRuntime(loadConfig({ env, cwd: home }), { logger: silentLogger, platformAdapters: true, startJobs: true, defaultMetrics: false });
  server = await startServer(runtime, 0, '127.0.0.1');
});

afterAll(async () => {
  await server?.close();
  await runtime?.close();
  await slack?.close();
});

async function deliver(event: Record<string, unknown>): Promise<void> {
  const body = JSON.stringify(eventCallback(event));
  const res = await fetch(`${server.url}/slack/events`, { method: 'POST', headers: { 'content-type': 'application/json', ...slackSignature(body, nowSec(), SECRET) }, body });
  expect(res.status).toBe(200);
}

/** Every text the bot wrote into the thread rooted at `ts` (posts and edits, in order). */
const threadTexts = (ts: string): string[] => {
  const posted = new Set(slack.callsTo('chat.postMessage').filter((c) => c.args.thread_ts === ts).map((c) => (c.reply as { ts: string }).ts));
  return slack.calls
    .filter((c) => (c.method === 'chat.postMessage' && c.args.thread_ts === ts) || (c.method === 'chat.update' && posted.has(c.args.ts as string)))
    .map(shownText);
};

/** What a message shows: its section blocks (the `text` field is only a truncated notification fallback). */
function shownText(call: ApiCall): string {
  const blocks = (call.args.blocks ?? []) as { type: string; text?: { text: string } }[];
  const sections = blocks.filter((b) => b.type === 'section' && b.text).map((b) => b.text!.text);
  const text = sections.length ? sections.join('\n') : String(call.args.text);
  return text.replace(/&lt;/g, '<').replace(/&gt;/g, '>').replace(/&amp;/g, '&');
}

/** Mentions the bot in channel C1 and waits for the bot's last word in that thread to match. */
async function mention(user: string, text: string, until: RegExp, timeoutMs = 10_000): Promise<{ ts: string; texts: string[] }> {
  const event = appMention(`<@UBOT> ${text}`, { user });
  await deliver(event);
  const ts = event.ts as string;
  await waitFor(() => until.test(threadTexts(ts).at(-1) ?? ''), timeoutMs);
  return { ts, texts: threadTexts(ts) };
}

const answerMessage = (ts: string): ApiCall => slack.callsTo('chat.postMessage').find((c) => c.args.thread_ts === ts)!;

describe('the training loop from Slack', () => {
  it('questions, votes, /train with progress and curves in the thread, promotion, an answer from the new version, rollback', { timeout: 400_000 }, async () => {
    // A question, answered from the knowledge base (no model yet), and a 👍 reaction on it.
    const q1 = await mention('U1', 'How many days of annual leave do I get?', /25 days/);
    const answerTs = (answerMessage(q1.ts).reply as { ts: string }).ts;
    const record = (await runtime.store.findAnswerByReply('slack', answerTs))!;
    expect(record).toMatchObject({ modelVersion: expect.any(String), modelName: expect.stringMatching(/retrieval/) });
    await deliver({ type: 'reaction_added', user: 'U2', reaction: '+1', item_user: 'UBOT', item: { type: 'message', channel: 'C1', ts: answerTs }, event_ts: `${nowSec()}.000300` });
    await waitFor(async () => (await runtime.store.feedbackFor(record.id)).length === 1);

    // Non-admins are refused, politely.
    expect((await mention('U1', '/train sft', /only admins/)).texts.at(-1)).toMatch(/Sorry, only admins can run \/train/);
    expect((await mention('U1', '/model rollback', /only admins/)).texts.at(-1)).toMatch(/only admins/);

    // Pretrain a tiny base model: the job's message in the thread is edited as it runs.
    const pre = await mention('UADMIN', '/train pretrain modelSize=tiny blockSize=256 maxIters=6 evalInterval=3 checkpointInterval=3 tokenizerVocabSize=400', /— (succeeded|failed)/, 90_000);
    const preJob = pre.texts.filter((t) => /Job #1 pretrain/.test(t));
    expect(preJob.at(-1)).toMatch(/— succeeded/);
    expect(preJob.some((t) => /— running/.test(t))).toBe(true);
    expect(preJob.at(-1)).toMatch(/New model v1: val loss \d/);
    expect(preJob.at(-1)).toMatch(/Not promoted: this stage has no evaluation gate/);
    // The loss curves, uploaded into the same thread (files upload v2).
    await waitFor(() => slack.callsTo('files.completeUploadExternal').length === 1);
    const upload = slack.callsTo('files.getUploadURLExternal')[0]!;
    expect(upload.args).toMatchObject({ filename: 'job-1-pretrain-loss.png' });
    expect(slack.uploads[0]!.bytes.subarray(1, 4).toString()).toBe('PNG');
    expect(Number(upload.args.length)).toBe(slack.uploads[0]!.bytes.length);
    const completed = slack.callsTo('files.completeUploadExternal')[0]!;
    expect(completed.args).toMatchObject({ channel_id: 'C1', thread_ts: pre.ts });
    expect(String(completed.args.files)).toContain(slack.uploads[0]!.fileId);

    // No gate, so an admin promotes it by hand (recorded as an override); answers now come from v1.
    expect((await mention('UADMIN', '/model promote v1', /Now answering/)).texts.at(-1)).toMatch(/Now answering with v1\. It has no evaluation gate result; promoted by hand/);
    const q2 = await mention('U1', 'How many days of annual leave do I get?', /./);
    await waitFor(async () => (await runtime.store.findAnswerByReply('slack', (answerMessage(q2.ts).reply as { ts: string }).ts)) !== undefined, 15_000);
    expect(await runtime.store.findAnswerByReply('slack', (answerMessage(q2.ts).reply as { ts: string }).ts)).toMatchObject({ modelName: 'teamllm', modelVersion: 'v1' });

    // Fine-tune it: evaluated against the serving v1 on held-out questions; the gate decides. With
    // answerTokens=0 both models answer the held-out questions with nothing, so the adapter cannot
    // beat its base whatever the training did: the gate refuses it and v1 keeps serving. (A passed
    // gate's promotion message and the rollback from v2 are tests/app/promotion.test.ts's.)
    const sft = await mention('UADMIN', `/train sft questions=${questions} maxIters=3 batchSize=4 rank=2 alpha=4 answerTokens=0 k=1 maxContextTokens=160 generateMax=24 evalInterval=3`, /— (succeeded|failed)/, 120_000);
    const sftFinal = sft.texts.filter((t) => /Job #2 sft/.test(t)).at(-1)!;
    expect(sftFinal).toMatch(/— succeeded/);
    expect(sftFinal).toMatch(/Evaluation \(before → after\): .*exactMatch 0 → 0, f1 0 → 0, containsGold 0 → 0/);
    expect(sftFinal).toMatch(/Evaluation gate: ❌ not passed — The fine-tuned model does NOT beat its base on the 6 held-out questions \(f1 0\.0% → 0\.0%\): it is not promoted\./);
    expect(sftFinal).not.toMatch(/Promoted v2/);
    await waitFor(() => slack.callsTo('files.completeUploadExternal').length === 2);

    // /train reward with one vote: a clear refusal in the job's message.
    const tooFew = await mention('UADMIN', '/train reward', /— (succeeded|failed)/, 60_000);
    expect(tooFew.texts.at(-1)).toMatch(/— failed[\s\S]*too little feedback to train a reward model/);

    // A team's worth of votes (simulated users who like quotes, through the store's feedback path),
    // then /train reward trains on them and reports its held-out check against chance.
    const sim = await simulateFeedback(runtime.store, syntheticFacts(40), new SimulatedUsers({ seed: 5 }), { answersPerQuestion: 3, distractors: 0 });
    expect(sim.up).toBeGreaterThan(20);
    expect(sim.down).toBeGreaterThan(20);
    // The gate's bar is set above any possible score (an accuracy or AUC over 1), so that the
    // outcome does not hang on four steps of a tiny model: refused, and the message says so.
    const reward = await mention('UADMIN', '/train reward maxIters=4 batchSize=8 evalInterval=4 rank=2 minAccuracy=1.01 minAuc=1.01', /— (succeeded|failed)/, 150_000);
    const rewardFinal = reward.texts.at(-1)!;
    expect(rewardFinal).toMatch(/Job #\d+ reward \(maxIters=4.*\) — succeeded/);
    expect(rewardFinal).toMatch(/held-out pair accuracy [\d.]+%, vote AUC [\d.]+/);
    expect(rewardFinal).toMatch(/Evaluation gate: ❌ not passed/);
    expect(rewardFinal).toMatch(/Reward model "v1-reward-\d+" is not used: it is no better than chance on held-out questions/);
    expect(rewardFinal).not.toMatch(/is now the one RLHF uses/);
    await waitFor(() => slack.callsTo('files.completeUploadExternal').length === 3);

    expect(runtime.bot.serving.model.version).toBe('v1');
    const q3 = await mention('U1', 'Who approves expenses?', /./);
    await waitFor(async () => (await runtime.store.findAnswerByReply('slack', (answerMessage(q3.ts).reply as { ts: string }).ts)) !== undefined, 15_000);
    expect(await runtime.store.findAnswerByReply('slack', (answerMessage(q3.ts).reply as { ts: string }).ts)).toMatchObject({ modelVersion: 'v1' });

    // Rollback, down to retrieval-only answers.
    expect((await mention('UADMIN', '/model rollback', /Rolled back/)).texts.at(-1)).toMatch(/no model version serves now \(was v1\)/);
    expect(runtime.bot.serving.model.kind).toBe('retrieval-only');

    const audit = (await runtime.store.auditLog(100)).map((a) => `${a.actor} ${a.action}`);
    expect(audit).toEqual(expect.arrayContaining(['slack:UADMIN train', 'slack:UADMIN promote', 'slack:UADMIN rollback']));
  });
});
