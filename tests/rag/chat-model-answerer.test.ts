/**
 * The imported chat model's answerer (rag/chat-model-answerer.ts) with a tiny random-weight Qwen2:
 * its prompt (the model's template around the instructions, the numbered passages and the
 * question), the candidate answerer's gate and refusal (the model never called), streaming,
 * the token limit, abort, fitting the passages to the context, and the direct answer's shape.
 * Random weights write gibberish: these tests assert structure, never wording.
 */
import { beforeAll, describe, expect, it } from 'vitest';
import type { AnswerEvent, AnswerRequest, Source } from '../../src/core/index.ts';
import { LocalKnowledgeBase } from '../../src/rag/local-knowledge-base.ts';
import { CandidateAnswerer } from '../../src/rag/candidate-answerer.ts';
import { CHAT_SYSTEM_PROMPT, ChatModelAnswerer, chatAnswerMessages, generatedDirect, type ServedChatModel } from '../../src/rag/chat-model-answerer.ts';
import { ChatTokenizer, BPE_PRE_TOKENIZERS, byteLevelBpeTokenizerJson } from '../../src/model/import/chat-tokenizer.ts';
import { LlamaModel } from '../../src/model/import/llama.ts';
import { tinyChatModel } from '../model/import/tiny-llama.ts';
import { tempFolder } from './fixtures.ts';

const LEAVE = `# Leave

## Annual leave

Full-time staff receive 25 vacation days per year. You may carry over at most 5 days into the next year.

## Sick leave

Report sick to your manager before 09:30 on the first day. The company pays 70% of your salary from the second year of illness.
`;
const IT = `# IT

## Lost devices

Report a lost or stolen laptop in Beacon within 1 hour of noticing. If it was stolen, file a police report.

## VPN

The VPN client is called Tunnelbee. Install it from the self-service portal before your first day of remote work.
`;

const ANSWERABLE = 'How many vacation days do I get per year?';
const UNANSWERABLE = 'What is the parking policy for electric scooters?';

function ask(question: string, signal?: AbortSignal): AnswerRequest {
  return { question, history: [], user: { platform: 'web', id: 'u' }, channel: 'c', ...(signal ? { signal } : {}) };
}

/** The tiny model with `maxPositions` positions; `calls` counts forward passes. */
function served(maxPositions = 2048): ServedChatModel & { calls: () => number } {
  // Llama (untied head): a tied random model only repeats the prompt's last token (a newline).
  const tiny = tinyChatModel('llama', 3);
  const config = { ...tiny.config, maxPositions };
  const model = new LlamaModel(config, tiny.weights);
  const v = tiny.vocab;
  const tokenizer = new ChatTokenizer(byteLevelBpeTokenizerJson(v.tokens, v.types, v.merges, BPE_PRE_TOKENIZERS[v.pre]!), {
    chatTemplate: tiny.chatTemplate,
    eosIds: tiny.eosIds,
    templateStrings: { bos_token: tiny.bosToken!, eos_token: tiny.eosToken },
  });
  let calls = 0;
  return {
    model: {
      config,
      newCache: (capacity) => model.newCache(capacity),
      forward: (ids, cache, options) => {
        calls += 1;
        return model.forward(ids, cache, options);
      },
    },
    tokenizer,
    calls: () => calls,
  };
}

const INFO = { name: 'tiny-qwen', version: 'v9', kind: 'language-model' } as const;

async function collect(events: AsyncIterable<AnswerEvent>, onToken?: (n: number) => void) {
  let text = '';
  let sources: Source[] = [];
  let near: Source[] | undefined;
  let done: Extract<AnswerEvent, { type: 'done' }> | undefined;
  const order: string[] = [];
  let tokens = 0;
  for await (const e of events) {
    if (order.at(-1) !== e.type) order.push(e.type);
    if (e.type === 'token') {
      text += e.text;
      tokens += 1;
      onToken?.(tokens);
    } else if (e.type === 'sources') {
      sources = e.sources;
      near = e.near;
    } else done = e;
  }
  return { text, sources, near, done, order, tokens };
}

describe('ChatModelAnswerer', () => {
  const kb = new LocalKnowledgeBase(':memory:');
  beforeAll(async () => {
    await kb.addPaths([tempFolder({ 'hr/leave.md': LEAVE, 'it/devices.md': IT })]);
  });

  it('answers through the chat template with the numbered passages and the question, streaming, within the token limit', async () => {
    const chat = served();
    const answerer = new ChatModelAnswerer({ kb, chat, model: INFO, maxTokens: 24 });
    const gate = await new CandidateAnswerer({ kb }).decide(ask(ANSWERABLE));
    expect(gate.confident).toBe(true);
    const callsAtToken: number[] = [];
    const got = await collect(answerer.answer(ask(ANSWERABLE)), () => callsAtToken.push(chat.calls()));

    expect(got.order).toEqual(['sources', 'token', 'done']);
    // The same passages as the candidate answerer retrieved, all of them (they fit), in its order.
    expect(got.sources.map((s) => s.text)).toEqual(gate.sources.map((s) => s.text));
    expect(got.sources.length).toBeGreaterThan(1);
    // The prompt is the model's template rendered around the system message and the user's turn.
    const prompt = got.done!.prompt;
    expect(prompt).toBe(chat.tokenizer.renderChat(chatAnswerMessages(ANSWERABLE, got.sources)));
    expect(prompt.startsWith(`<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\n${CHAT_SYSTEM_PROMPT}<|eot_id|><|start_header_id|>user<|end_header_id|>\n\nPassages:\n\n[1] `)).toBe(true);
    got.sources.forEach((s, i) => expect(prompt).toContain(`[${i + 1}] ${s.title} (${s.source})\n${s.text.trim()}`));
    expect(prompt).toContain('Full-time staff receive 25 vacation days per year.');
    expect(prompt.endsWith(`\n\nQuestion: ${ANSWERABLE}<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n`)).toBe(true);
    // Streamed: pieces arrive one decoding step at a time, not all at the end.
    expect(got.tokens).toBeGreaterThan(3);
    expect(callsAtToken[0]).toBeLessThan(callsAtToken.at(-1)!);
    // One prefill, then one pass per token, never more than the limit.
    expect(chat.calls()).toBeGreaterThan(1);
    expect(chat.calls()).toBeLessThanOrEqual(24);
    expect(got.text.trim().length).toBeGreaterThan(0);
    expect(got.done!.direct).toBe(generatedDirect(got.text));
  });

  it('tells the model which question a follow-up follows, and answers it where the follow-up alone would be refused', async () => {
    const chat = served();
    const answerer = new ChatModelAnswerer({ kb, chat, model: INFO, maxTokens: 8 });
    const followUp = 'And what about per year for part-timers?';
    const history = [
      { role: 'user' as const, text: ANSWERABLE, at: 1 },
      { role: 'assistant' as const, text: '25 days', at: 2 },
    ];
    const got = await collect(answerer.answer({ ...ask(followUp), history }));
    expect(got.done!.prompt).toContain(`Question: ${followUp} (a follow-up to the earlier question: ${ANSWERABLE})<|eot_id|>`);
    expect(got.sources.length).toBeGreaterThan(0);
    // Without the thread, the same words are not a question the passages answer.
    const alone = await collect(answerer.answer(ask(followUp)));
    expect(alone.done!.direct).toBe('');
  });

  it("refuses as the candidate answerer does, word for word, and never calls the model", async () => {
    const chat = served();
    const answerer = new ChatModelAnswerer({ kb, chat, model: INFO });
    const got = await collect(answerer.answer(ask(UNANSWERABLE)));
    const today = await collect(new CandidateAnswerer({ kb }).answer(ask(UNANSWERABLE)));
    expect(today.done!.direct).toBe('');
    expect(got.text).toBe(today.text);
    expect(got.text).toMatch(/^Sorry, I couldn't find that in the knowledge base\./);
    expect(got.sources).toEqual([]);
    // The closest sections are named as the candidate answerer names them, to point at one.
    // Nothing retrieved, nothing named; a question that shares words with a section names it, as the candidate answerer does.
    expect(got.near).toBeUndefined();
    const NEAR = 'Is there a parking policy for the VPN at home?';
    const named = await collect(answerer.answer(ask(NEAR)));
    const namedToday = await collect(new CandidateAnswerer({ kb }).answer(ask(NEAR)));
    expect(named.done!.direct).toBe('');
    expect(namedToday.near?.length).toBeGreaterThan(0);
    expect(named.near?.map((p) => p.title)).toEqual(namedToday.near?.map((p) => p.title));
    expect(got.done).toMatchObject({ direct: '', prompt: `(no passage answers it) ${UNANSWERABLE}` });
    expect(chat.calls()).toBe(0);
  });

  it('stops generating when the request is aborted', async () => {
    const chat = served();
    const answerer = new ChatModelAnswerer({ kb, chat, model: INFO, maxTokens: 200 });
    const controller = new AbortController();
    let callsAtAbort = -1;
    const got = await collect(answerer.answer(ask(ANSWERABLE, controller.signal)), (n) => {
      if (n === 2) {
        controller.abort();
        callsAtAbort = chat.calls();
      }
    });
    expect(callsAtAbort).toBeGreaterThan(0);
    expect(chat.calls()).toBe(callsAtAbort);
    expect(got.tokens).toBe(2);
    expect(got.done).toBeUndefined();
  });

  it('fits the passages to the context: drops the lower-ranked ones, then cuts the chosen one around its sentence, else refuses', async () => {
    const gate = await new CandidateAnswerer({ kb }).decide(ask(ANSWERABLE));
    const cited = gate.sources[gate.chosen!.citation - 1]!;
    const probe = served();
    const tokens = (passages: Source[]) => probe.tokenizer.encodeChat(chatAnswerMessages(ANSWERABLE, passages)).length;
    const all = tokens(gate.sources);
    const one = tokens([cited]);
    expect(all).toBeGreaterThan(one + 8);

    // Room for the chosen passage alone (8 positions kept for the answer).
    const tight = served(one + 8);
    const fitted = await collect(new ChatModelAnswerer({ kb, chat: tight, model: INFO, maxTokens: 8 }).answer(ask(ANSWERABLE)));
    expect(fitted.sources.map((s) => s.text)).toEqual([cited.text]);
    expect(fitted.done!.prompt).toContain(`[1] ${cited.title} (${cited.source})\n${cited.text.trim()}`);
    expect(fitted.done!.prompt).not.toContain('[2] ');
    expect(tight.calls()).toBeGreaterThan(0);

    // Less room: the chosen passage cut around its supporting sentence.
    const cut = served(one + 8 - 12);
    const trimmed = await collect(new ChatModelAnswerer({ kb, chat: cut, model: INFO, maxTokens: 8 }).answer(ask(ANSWERABLE)));
    expect(trimmed.sources).toHaveLength(1);
    expect(trimmed.sources[0]!.text).toContain(gate.chosen!.support);
    expect(trimmed.sources[0]!.text.length).toBeLessThan(cited.text.length);
    expect(trimmed.sources[0]!.text).toMatch(/…/);

    // Not even the instructions and the supporting sentence fit: refused, the model never called.
    const none = served(64);
    const refused = await collect(new ChatModelAnswerer({ kb, chat: none, model: INFO, maxTokens: 8 }).answer(ask(ANSWERABLE)));
    expect(refused.done).toMatchObject({ direct: '', prompt: `(no passage fitted the model's context) ${ANSWERABLE}` });
    expect(refused.sources).toEqual([]);
    expect(refused.text).toMatch(/^Sorry, I couldn't find that in the knowledge base\./);
    expect(none.calls()).toBe(0);
  });

  it('folds the instructions into the user turn when the template has no system role', async () => {
    const tiny = tinyChatModel('qwen2', 3);
    const v = tiny.vocab;
    const template = "{%- for m in messages %}{%- if m.role == 'system' %}{{ raise_exception('System role not supported') }}{%- endif %}{{ '<|im_start|>[INST] ' + m.content + ' [/INST]' }}{%- endfor %}";
    const tokenizer = new ChatTokenizer(byteLevelBpeTokenizerJson(v.tokens, v.types, v.merges, BPE_PRE_TOKENIZERS[v.pre]!), { chatTemplate: template, eosIds: tiny.eosIds });
    const model = new LlamaModel({ ...tiny.config, maxPositions: 2048 }, tiny.weights);
    const got = await collect(new ChatModelAnswerer({ kb, chat: { model, tokenizer }, model: INFO, maxTokens: 4 }).answer(ask(ANSWERABLE)));
    expect(got.done!.prompt.startsWith(`<|im_start|>[INST] ${CHAT_SYSTEM_PROMPT}\n\nPassages:\n\n[1] `)).toBe(true);
    expect(got.done!.prompt).toContain(`Question: ${ANSWERABLE} [/INST]`);
  });
});

describe('generatedDirect', () => {
  it('is the first sentence without citations or markdown, numbers intact; empty when the model does not know', () => {
    expect(generatedDirect('**25 days** of annual leave per year [1]. You may carry over 5 days [1].')).toBe('25 days of annual leave per year.');
    expect(generatedDirect('- You get `2.5` days [1][2]\n- more')).toBe('You get 2.5 days');
    expect(generatedDirect('## Answer\n| 0–4 years | 25 days |')).toBe('0–4 years 25 days');
    expect(generatedDirect('每年 5 天年假[1]。转正后生效。')).toBe('每年 5 天年假。');
    expect(generatedDirect("I don't know: the passages do not say. [1]")).toBe('');
    expect(generatedDirect('The passages do not mention it, so I do not know.')).toBe('');
    expect(generatedDirect('抱歉，我不知道。')).toBe('');
  });
});
