/**
 * RLHF episodes of an imported chat model, in its own chat template: the prompt is exactly what
 * the bot sends it at answer time (the answerer's system message and numbered passages, then the
 * question as the user's turn: chat-data.ts lays an SFT example out the same way), and the answer
 * is the assistant's content and the end-of-turn token that closes it, the tokens SFT puts its
 * loss on. DPO's and KTO's sequence log-probabilities are sums over exactly those tokens.
 */
import type { ChatTokenizer } from '../../model/import/chat-tokenizer.ts';
import { encodeChatSftExample } from '../sft/chat-data.ts';
import type { SftExample } from '../sft/data.ts';
import type { EpisodeCodec, RlhfPrompt } from './episodes.ts';
import type { Episode } from './policy.ts';

export interface ChatEpisodeOptions {
  /** Answer tokens at most (the end-of-turn token included); longer answers are cut. */
  maxAnswerTokens: number;
  /** Prompt and answer together at most (the model's context, or less): a longer prompt is refused. */
  maxTokens: number;
  systemPrompt?: string;
  /** The model's vocabulary rows: ids past the tokenizer's (padding rows) end a sampled answer too. */
  vocabSize?: number;
}

function example(p: RlhfPrompt, answer: string): SftExample {
  return { messages: [{ role: 'user', content: p.question }, { role: 'assistant', content: answer }], ...(p.passages.length ? { context: p.passages } : {}) };
}

export function chatEpisodes(tokenizer: ChatTokenizer, o: ChatEpisodeOptions): EpisodeCodec {
  const stopIds = new Set(tokenizer.eosIds);
  for (let id = tokenizer.vocabSize; id < (o.vocabSize ?? 0); id++) stopIds.add(id);
  const episode = (p: RlhfPrompt, answer: string): Episode => {
    // The whole answer is encoded (the template may put text after it), then cut to the budget.
    const e = encodeChatSftExample(tokenizer, example(p, answer), { maxTokens: Number.MAX_SAFE_INTEGER, ...(o.systemPrompt ? { systemPrompt: o.systemPrompt } : {}) });
    if (!e) throw new Error(`"${p.question.slice(0, 60)}": the chat template gave no assistant turn`);
    const first = e.targets.findIndex((t) => t >= 0);
    const tokens: number[] = [];
    for (let t = first; t < e.targets.length && e.targets[t]! >= 0; t++) tokens.push(e.targets[t]!);
    const prompt = Array.from(e.ids.subarray(0, first + 1));
    const kept = tokens.slice(0, o.maxAnswerTokens);
    if (prompt.length + kept.length > o.maxTokens) throw new Error(`"${p.question.slice(0, 60)}": the prompt (${prompt.length} tokens) and the answer do not fit ${o.maxTokens} tokens`);
    return { prompt, answer: kept };
  };
  return {
    // The ids before an (empty) answer are the served prompt: the template's generation prompt.
    prompt: (p) => episode(p, '').prompt,
    episode,
    text: (tokens) => tokenizer.decode(tokens.filter((t) => !stopIds.has(t))).trim(),
    stopIds,
    pad: [...tokenizer.eosIds][0] ?? 0,
    maxAnswerTokens: o.maxAnswerTokens,
  };
}
