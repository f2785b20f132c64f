/**
 * The held-out QA evaluation (qa-eval.ts) for an imported chat model: each question with the
 * passages retrieved for it, in the conversation the bot gives the model at answer time
 * (rag/chat-model-answerer.ts chatAnswerMessages, through the model's own chat template), greedy
 * decoding to its end-of-turn ids, scored as qa-eval scores a teamllm model. SFT on an imported
 * base is gated on it (pipeline.ts).
 */
import type { LlamaModel } from '../../model/import/llama.ts';
import type { ChatTokenizer } from '../../model/import/chat-tokenizer.ts';
import { chatAnswerMessages } from '../../rag/chat-model-answerer.ts';
import { qaScores, scoreQaItem, type QaItem, type QaQuestion, type QaRetriever, type QaScores } from './qa-eval.ts';

export interface EvaluateChatQaOptions {
  model: LlamaModel;
  tokenizer: ChatTokenizer;
  /** Recorded with the scores (a version). */
  name: string;
  kb?: QaRetriever;
  questions: QaQuestion[];
  /** Passages retrieved per question (default 3). */
  k?: number;
  /** Answer tokens at most (default 32). */
  maxTokens?: number;
  onQuestion?: (done: number, total: number) => void;
  signal?: AbortSignal;
}

export async function evaluateChatQa(options: EvaluateChatQaOptions): Promise<QaScores> {
  const { model, tokenizer } = options;
  const items: QaItem[] = [];
  for (const [i, q] of options.questions.entries()) {
    if (options.signal?.aborted) break;
    const retrieved = options.kb ? await options.kb.search(q.question, options.k ?? 3) : [];
    const messages = chatAnswerMessages(q.question, retrieved.map((p) => ({ source: p.source, title: p.title, text: p.text })));
    const prompt = tokenizer.encodeChat(messages, { addGenerationPrompt: true });
    const answer = model.generate(prompt, { maxTokens: options.maxTokens ?? 32, stop: tokenizer.eosIds });
    items.push(scoreQaItem(q, i, tokenizer.decode(answer).trim(), retrieved, tokenizer.renderChat(messages)));
    options.onQuestion?.(items.length, options.questions.length);
    // Let the job's progress and abort through between questions.
    await new Promise((resolve) => setImmediate(resolve));
  }
  return qaScores(items, options.name, 'free');
}
