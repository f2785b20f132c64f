/**
 * Issue 22, "must show": two `teamllm serve` processes, each with its own TEAMLLM_HOME, on one
 * PostgreSQL (a throwaway cluster) and one shared models folder. A Slack event delivered to both is
 * answered once; a vote through one is in the other's `data export`; `kb add` through one is
 * found by the other's search within 5 s; a promotion through one is served by both.
 * `/train` and kill -9 of the process running a job: tests/app/scale-out-jobs.test.ts (same set-up,
 * tests/app/scale-out-harness.ts).
 */
import { mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { saveModelFiles } from '../../src/model/model-files.ts';
import { ModelRegistry } from '../../src/model/registry.ts';
import { CharTokenizer } from '../../src/model/tokenizer/index.ts';
import { tinyModel, useBackend } from '../model/helpers.ts';
import { directMessage } from '../slack/harness.ts';
import { waitFor } from '../helpers.ts';
import { useScaleOut } from './scale-out-harness.ts';

const scaleOut = useScaleOut();

describe.skipIf(scaleOut.unavailable !== undefined)('two serve processes on one PostgreSQL', () => {
  it('answers a Slack event delivered to both once, shares votes, documents and promotions', async () => {
    const site = await scaleOut.site();
    const { modelsDir, cli } = site;
    const slack = scaleOut.slack();
    const [a, b] = await Promise.all([site.serve(), site.serve()]);

    // 1. The same Slack event delivered to both processes (a redelivery landing elsewhere): one answer.
    const event = directMessage('How many days of annual leave do I get?');
    const eventId = `EvScaleOut${Date.now()}`;
    const acks = await Promise.all([site.deliver(a, event, eventId), site.deliver(b, event, eventId)]);
    expect(acks.map((r) => r.status)).toEqual([200, 200]);
    await waitFor(() => slack.callsTo('chat.postMessage').length >= 1, 20_000);
    await new Promise((r) => setTimeout(r, 1500));
    expect(slack.callsTo('chat.postMessage')).toHaveLength(1);

    // 2. A vote through one process is in the other's `data export`.
    const asked = await fetch(`${a.url}/api/chat`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ text: 'How many days of annual leave?' }) });
    const { answerId } = (await asked.json()) as { answerId: string };
    const cookie = asked.headers.get('set-cookie')!.split(';')[0]!;
    const voted = await fetch(`${a.url}/api/feedback`, { method: 'POST', headers: { 'content-type': 'application/json', cookie }, body: JSON.stringify({ answerId, value: 1 }) });
    expect(voted.status).toBe(200);
    const exported = (await cli(b.home, ['data', 'export', '--kind', 'kto'])).trim().split('\n').filter(Boolean).map((l) => JSON.parse(l) as { answerId: string; label: boolean });
    expect(exported).toContainEqual(expect.objectContaining({ answerId, label: true }));

    // 3. `kb add` through one process is found by the other's search within 5 s.
    const docs = mkdtempSync(join(tmpdir(), 'teamllm-scale-docs-'));
    writeFileSync(join(docs, 'bicycles.md'), '# Bicycles\n\nThe bicycle shed behind building C opens with the staff badge.');
    await cli(a.home, ['kb', 'add', join(docs, 'bicycles.md')]);
    const added = Date.now();
    await waitFor(async () => {
      const res = await fetch(`${b.url}/api/chat`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ text: 'Where is the bicycle shed?' }) });
      const { sources } = (await res.json()) as { sources: { source: string }[] };
      return sources.some((s) => s.source === 'bicycles.md');
    }, 5_000);
    expect(Date.now() - added).toBeLessThan(5_000);

    // 4. A version promoted through one process is served by both (shared models folder; each
    // `serve` follows the registry every few seconds).
    await useBackend('cpu');
    const tokenizer = CharTokenizer.fromText('abcdefghijklmnopqrstuvwxyz ?.');
    const made = join(mkdtempSync(join(tmpdir(), 'teamllm-scale-model-')), 'made');
    mkdirSync(made, { recursive: true });
    await saveModelFiles(made, tinyModel({ vocabSize: tokenizer.vocabSize, blockSize: 16, nLayer: 1, nHead: 2, nEmbd: 8, dropout: 0, bias: true }), tokenizer);
    await new ModelRegistry(a.home, modelsDir).register(made);
    await cli(a.home, ['model', 'promote', 'v1']);
    const servingVersion = async (url: string) => ((await (await fetch(`${url}/healthz`)).json()) as { model: { version: string } }).model.version;
    await waitFor(async () => (await servingVersion(a.url)) === 'v1' && (await servingVersion(b.url)) === 'v1', 20_000);
  }, 240_000);
});
