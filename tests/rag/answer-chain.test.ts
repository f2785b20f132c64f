import { FakeListChatModel } from '@langchain/core/utils/testing';
import { FakeLLM, FakeStreamingLLM } from '@langchain/core/utils/testing';
import { beforeAll, describe, expect, it } from 'vitest';
import type { AnswerEvent, AnswerRequest } from '../../src/core/index.ts';
import {
  ChainAnswerer,
  createAnswerChain,
  HybridRetriever,
  InMemoryVectorStore,
  LocalEmbeddings,
  LocalKnowledgeBase,
  RetrievalOnlyAnswerer,
} from '../../src/rag/index.ts';
import { trainEncoder } from '../../src/rag/encoder-training.ts';
import { tempFolder } from './fixtures.ts';

const MODEL = { name: 'test-llm', version: 't1', kind: 'language-model' as const };

function ask(question: string, channel = 'c'): AnswerRequest {
  return { question, history: [{ role: 'user', text: 'hi', at: 1 }], user: { platform: 'web', id: 'u' }, channel };
}

async function collect(events: AsyncIterable<AnswerEvent>) {
  const order: string[] = [];
  let text = '';
  let sources: { source: string; title: string }[] = [];
  let prompt = '';
  for await (const e of events) {
    if (order.at(-1) !== e.type) order.push(e.type);
    if (e.type === 'token') text += e.text;
    if (e.type === 'sources') sources = e.sources;
    if (e.type === 'done') prompt = e.prompt;
  }
  return { order, text, sources, prompt };
}

describe('the answer chain', () => {
  const kb = new LocalKnowledgeBase(':memory:');
  beforeAll(async () => {
    await kb.addPaths([
      tempFolder({
        'it.md': '# IT\n\n## VPN\n\nThe VPN client is called Tunnelbee. Install it from the self-service portal.\n\n## Printers\n\nPrinters are on floor 2.',
        'hr/leave.md': '# Leave\n\n## Annual leave\n\nFull-time staff receive 25 vacation days per year.',
      }),
    ]);
    const { encoder, report } = await trainEncoder(kb.passages(), { config: { buckets: 4096, dim: 16, members: 2 }, steps: 30, batchSize: 4 });
    const embeddings = LocalEmbeddings.fromTraining(encoder, report, { sources: 2, passages: kb.chunkCount });
    await kb.useDense({ embeddings, store: new InMemoryVectorStore(embeddings) });
  });

  it('streams sources, then the model tokens, then the exact prompt with numbered passages', async () => {
    const llm = new FakeStreamingLLM({ sleep: 0, responses: ['The VPN client is Tunnelbee [1].'] });
    const answerer = new ChainAnswerer({ kb, llm, model: MODEL, answerability: { signal: 'coverage', threshold: 0.3 } });
    const result = await collect(answerer.answer(ask('What is the VPN client called?')));
    expect(result.order).toEqual(['sources', 'token', 'done']);
    expect(result.text).toBe('The VPN client is Tunnelbee [1].');
    expect(result.sources[0]).toMatchObject({ source: 'it.md', title: 'IT > VPN' });
    expect(result.prompt).toContain('[1] IT > VPN (it.md)\nThe VPN client is called Tunnelbee.');
    expect(result.prompt).toContain('Question: What is the VPN client called?');
    expect(result.prompt).toContain('User: hi');
    expect(answerer.model).toBe(MODEL);
  });

  it('says it does not know, without calling the model, when no passage passes the threshold', async () => {
    const llm = new FakeLLM({ thrownErrorString: 'the model must not be called' });
    const answerer = new ChainAnswerer({ kb, llm, model: MODEL, answerability: { signal: 'coverage', threshold: 0.5 } });
    const english = await collect(answerer.answer(ask('What is the parental leave policy in Brazil?')));
    expect(english.sources).toEqual([]);
    expect(english.text).toMatch(/couldn't find/);
    const chinese = await collect(answerer.answer(ask('食堂几点开门？')));
    expect(chinese.text).toContain('没有找到');
  });

  it('scopes retrieval per request with a metadata filter (a channel bound to a knowledge base)', async () => {
    const llm = new FakeStreamingLLM({ sleep: 0, responses: ['ok'] });
    const answerer = new ChainAnswerer({
      kb,
      llm,
      model: MODEL,
      answerability: { signal: 'coverage', threshold: 0 },
      filterFor: (r) => (r.channel === 'hr-channel' ? { folder: 'hr' } : undefined),
    });
    const result = await collect(answerer.answer(ask('What is the VPN client called?', 'hr-channel')));
    expect(result.sources.every((s) => s.source.startsWith('hr/'))).toBe(true);
  });

  it('is one Runnable for invoke: retrieve -> prompt -> LLM or chat model -> text', async () => {
    const retriever = new HybridRetriever({ kb, k: 2 });
    const docs = await retriever.invoke('vacation days per year');
    expect(docs[0]!.metadata).toMatchObject({ source: 'hr/leave.md', title: 'Leave > Annual leave' });
    // FakeLLM without a response echoes its prompt: the chain put the numbered passages in it.
    const echoed = await createAnswerChain(retriever, new FakeLLM({})).invoke({ question: 'How many vacation days do I get?' });
    expect(echoed).toContain('[1] Leave > Annual leave (hr/leave.md)');
    expect(echoed).toContain('Question: How many vacation days do I get?');
    const chat = await createAnswerChain(retriever, new FakeListChatModel({ responses: ['25 days [1].'] })).invoke({ question: 'vacation days?' });
    expect(chat).toBe('25 days [1].');
  });

  it('falls back to quoting passages when there is no language model', async () => {
    const answerer = new RetrievalOnlyAnswerer(kb, { answerability: { signal: 'coverage', threshold: 0.3 } });
    expect(answerer.model).toMatchObject({ kind: 'retrieval-only', name: 'retrieval-only (hybrid BM25 + trained embeddings)' });
    const result = await collect(answerer.answer(ask('What is the VPN client called?')));
    expect(result.text).toContain('The VPN client is called Tunnelbee. [1]');
  });
});
