/** The model stubbed for the serve benches: answers at once, so what is measured is the framework. */
import type { AnswerEvent, Answerer } from '../src/core/index.ts';

export const instantAnswerer: Answerer = {
  model: { name: 'stub', version: '0', kind: 'language-model' },
  async *answer(): AsyncIterable<AnswerEvent> {
    yield { type: 'sources', sources: [{ source: 'a.md', title: 'A', text: 'stub passage', score: 1 }] };
    yield { type: 'token', text: 'stub ' };
    yield { type: 'token', text: 'answer' };
    yield { type: 'done', prompt: 'stub' };
  },
};
