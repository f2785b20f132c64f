import { AIMessage, HumanMessage, SystemMessage } from '@langchain/core/messages';
import { beforeAll, describe, expect, it } from 'vitest';
import { CharTokenizer } from '../../src/model/tokenizer/index.ts';
import { LoadedModel } from '../../src/model/loaded-model.ts';
import { CONTEXT_MESSAGE_NAME, LocalChatModel, toTemplate } from '../../src/model/langchain-chat-model.ts';
import { tinyModel, useBackend } from './helpers.ts';

let local: LoadedModel;

beforeAll(async () => {
  await useBackend('wasm');
  const tokenizer = CharTokenizer.fromText('abcdefghijklmnopqrstuvwxyz ?.[]1', { specialTokens: true });
  const gpt = tinyModel({ vocabSize: tokenizer.vocabSize, blockSize: 96, nLayer: 1, nHead: 2, nEmbd: 16, dropout: 0, bias: true }, 3);
  local = new LoadedModel(gpt, tokenizer, { version: 'vtest', dir: '', numParameters: gpt.numParameters, meta: {} });
});

describe('LocalChatModel', () => {
  it('maps LangChain messages onto the chat template, passages into the context block', () => {
    const mapped = toTemplate([
      new SystemMessage('be brief'),
      new SystemMessage({ content: '[1] leave is 25 days', name: CONTEXT_MESSAGE_NAME }),
      new HumanMessage('how much leave'),
      new AIMessage('25 days'),
      new HumanMessage('and sick leave'),
    ]);
    expect(mapped).toEqual({
      messages: [
        { role: 'system', content: 'be brief' },
        { role: 'user', content: 'how much leave' },
        { role: 'assistant', content: '25 days' },
        { role: 'user', content: 'and sick leave' },
      ],
      context: ['[1] leave is 25 days'],
    });
  });

  it('streams exactly what the model generates greedily for the same prompt', async () => {
    const chat = new LocalChatModel({ model: local, generation: { maxTokens: 12, temperature: 0, stopAtEnd: false } });
    const messages = [new SystemMessage({ content: 'abc', name: CONTEXT_MESSAGE_NAME }), new HumanMessage('how much leave?')];
    let streamed = '';
    for await (const chunk of await chat.stream(messages)) streamed += String(chunk.content);
    const direct = await local.chat([{ role: 'user', content: 'how much leave?' }], { context: 'abc', maxTokens: 12, temperature: 0, stopAtEnd: false });
    expect(streamed).toBe(direct.text);
    expect(streamed.length).toBeGreaterThan(0);
    expect((await chat.invoke(messages)).content).toBe(direct.text);
  });
});
