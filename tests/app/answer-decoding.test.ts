import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { answerConstraint, answerSettings } from '../../src/model/answer-settings.ts';
import { ConfigError, loadConfig } from '../../src/app/config.ts';
import { encodeChat } from '../../src/model/chat-template.ts';
import { LoadedModel } from '../../src/model/loaded-model.ts';
import { useBackend } from '../model/helpers.ts';
import { charTokenizer, tinyChatModel } from '../sft/helpers.ts';

describe('answer decoding', () => {
  it("follows the model's SFT meta (merged or served view), TEAMLLM_ANSWER_DECODING overrides it", async () => {
    await useBackend('cpu');
    const tok = charTokenizer();
    const gpt = tinyChatModel(tok.vocabSize);
    const withMeta = (meta: Record<string, unknown>) => new LoadedModel(gpt, tok, { version: 'v2', dir: '.', numParameters: gpt.numParameters, meta });
    expect(answerSettings(withMeta({})).decoding).toBe('free'); // no SFT meta: free
    expect(answerSettings(withMeta({ adapter: { retrievalK: 2, decoding: 'extractive' } })).decoding).toBe('extractive');
    expect(answerSettings(withMeta({ lora: { meta: { answerTokens: 8, decoding: 'extractive' } } })).decoding).toBe('extractive');
    expect(answerSettings(withMeta({ adapter: { retrievalK: 2, decoding: 'free' } })).decoding).toBe('free');
    expect(answerSettings(withMeta({ adapter: { retrievalK: 2, decoding: 'extractive' } }), 'free').decoding).toBe('free');
    expect(answerSettings(withMeta({}), 'extractive').decoding).toBe('extractive');
    expect(answerSettings(withMeta({ adapter: { decoding: 'extractive' } }), 'model').decoding).toBe('extractive');
    // A base model's own meta (the quickstart's pretrained base) names its decoding too; an SFT meta wins.
    expect(answerSettings(withMeta({ decoding: 'extractive' })).decoding).toBe('extractive');
    expect(answerSettings(withMeta({ decoding: 'extractive', adapter: { decoding: 'free' } })).decoding).toBe('free');

    // The constraint of an extractive model allows only the starts of the context's words first (never its header).
    const model = withMeta({ adapter: { decoding: 'extractive' } });
    const prompt = encodeChat(tok, [{ role: 'user', content: 'How many days?' }], { context: '[1] Leave (leave.md)\nYou get 25 days.' });
    const hook = answerConstraint(model, answerSettings(model))!(prompt)!;
    expect([...hook([])!].map((id) => tok.decode([id])).sort()).toEqual(['2', 'Y', 'd', 'g']);
    expect(answerConstraint(model, answerSettings(model, 'free'))).toBeUndefined();
    gpt.dispose();
  });

  it('TEAMLLM_ANSWER_DECODING: candidates (default), model, extractive or free; anything else is a clear error', () => {
    const cwd = mkdtempSync(join(tmpdir(), 'teamllm-decoding-'));
    expect(loadConfig({ env: {}, cwd }).answerDecoding).toBe('candidates');
    expect(loadConfig({ env: { TEAMLLM_ANSWER_DECODING: 'model' }, cwd }).answerDecoding).toBe('model');
    expect(loadConfig({ env: { TEAMLLM_ANSWER_DECODING: 'extractive' }, cwd }).answerDecoding).toBe('extractive');
    expect(loadConfig({ env: { TEAMLLM_ANSWER_DECODING: 'free' }, cwd }).answerDecoding).toBe('free');
    let problems: string[] = [];
    try {
      loadConfig({ env: { TEAMLLM_ANSWER_DECODING: 'copy' }, cwd });
    } catch (err) {
      if (err instanceof ConfigError) problems = err.problems;
    }
    expect(problems.join('\n')).toMatch(/TEAMLLM_ANSWER_DECODING/);
  });
});
