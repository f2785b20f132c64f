import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../../src/app/config.ts';
import { createRuntime, type Runtime } from '../../src/app/runtime.ts';
import { silentLogger } from '../../src/core/index.ts';
import { message, RecordingTarget, waitFor } from '../helpers.ts';

// The loop an admin runs from chat: train a model, see it listed, promote it, get answers from it.
let runtime: Runtime;

beforeAll(async () => {
  const home = mkdtempSync(join(tmpdir(), 'teamllm-model-loop-'));
  const config = loadConfig({ env: { TEAMLLM_HOME: home, TEAMLLM_ADMINS: 'slack:UADMIN' }, cwd: home });
  runtime = await createRuntime(config, { logger: silentLogger, defaultMetrics: false, startJobs: true });
});

afterAll(async () => {
  await runtime?.close();
});

const admin = (text: string) => message({ text, user: { id: 'UADMIN' } });

describe('train, promote and serve from the chat', () => {
  it('pretrains a tiny model as a job, promotes it, answers with it, and refuses non-admins', async () => {
    const before = new RecordingTarget();
    await runtime.bot.handle(message({ text: 'How many days of annual leave do I get?' }), before);
    expect(before.last!.model?.kind).toBe('retrieval-only');

    const job = new RecordingTarget();
    await runtime.bot.handle(admin('/train pretrain modelSize=tiny blockSize=256 maxIters=6 evalInterval=3 checkpointInterval=3 tokenizerVocabSize=400'), job);
    await runtime.jobs.idle();
    await waitFor(() => /succeeded/.test(job.events.map((e) => e.content.text).join('\n')), 90_000);
    const finished = job.events.map((e) => e.content.text).find((t) => t.includes('succeeded'))!;
    expect(finished).toMatch(/New model v1: val loss \d+\.\d+/);

    const denied = new RecordingTarget();
    await runtime.bot.handle(message({ text: '/model promote v1' }), denied);
    expect(denied.last!.text).toMatch(/only admins/);

    const list = new RecordingTarget();
    await runtime.bot.handle(admin('/model list'), list);
    expect(list.last!.text).toMatch(/^• v1 — pretrain, [\d,]+ parameters/);

    const promote = new RecordingTarget();
    await runtime.bot.handle(admin('/model promote v1'), promote);
    expect(promote.last!.text).toMatch(/^Now answering with v1\. It has no evaluation gate result; promoted by hand, recorded in the audit log\.$/);
    expect((await runtime.store.auditLog(5)).some((a) => a.action === 'promote' && a.detail.version === 'v1')).toBe(true);

    const after = new RecordingTarget();
    // A fresh conversation: the earlier quoted answer in history would leave the tiny model's block no room for passages.
    const result = await runtime.bot.handle(message({ text: 'How many days of annual leave do I get?', channel: 'D2' }), after);
    expect(result.outcome).toBe('answered');
    expect(after.last!.model).toEqual({ name: 'teamllm', version: 'v1', kind: 'language-model' });
    const record = await runtime.store.getAnswer(result.answerId!);
    expect(record).toMatchObject({ modelName: 'teamllm', modelVersion: 'v1' });
    // The prompt kept for training is the chat the model saw: passages as context (a 256-token
    // block leaves them room), then the question.
    const prompt = JSON.parse(record!.prompt) as { role: string; name?: string; content: string }[];
    expect(prompt[0]).toMatchObject({ role: 'system', name: 'context' });
    expect(prompt.at(-1)).toEqual({ role: 'human', content: 'How many days of annual leave do I get?' });
    // A real training job in a worker thread: minutes on a loaded 2-core machine, not the default 30 s.
  }, 120_000);
});
