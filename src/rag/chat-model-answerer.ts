/**
 * An imported chat model (Llama/Mistral/Qwen2/Qwen3, src/model/import/) answering from the
 * retrieved passages, through its own chat template:
 *
 *   retrieve + the "don't know" gate (CandidateAnswerer.decide: the same passages and the same
 *   decision as the answer the bot gives without this model)
 *     -> refused: dontKnow(...), the model is not called
 *     -> a system message (answer only from the numbered passages, briefly, in the question's
 *        language, cite [n], say you do not know otherwise) and the passages [1]..[k] with the
 *        question, rendered by the model's template, fitted to its context (lower-ranked passages
 *        dropped, then the one the gate chose cut around its supporting sentence; nothing fits:
 *        refused, never generated without the passages)
 *     -> greedy decoding with the KV cache, one token at a time, streamed; stops at the model's
 *        end-of-turn ids, the token limit, or the request's abort signal.
 *
 * The sources are the passages the prompt numbered, in that order, so `[n]` names sources[n-1].
 * `direct` is the generated answer's first sentence without citations or markdown ('' when the
 * bot refused, or the model said it does not know).
 *
 * The model is a TokenGenerator: served, a worker thread holds it (model/import/worker-chat-model.ts)
 * and this thread only renders, fits and decodes; in tests and tools, an in-process LlamaModel (its
 * forward on this thread, yielding between prefill chunks and tokens). Both run the same greedy loop
 * (model/import/chat-generation.ts), so they give the same ids.
 */
import type { AnswerEvent, AnswerRequest, Answerer, Logger, ModelInfo, Source } from '../core/index.ts';
import type { ChatMessage, ChatTokenizer } from '../model/import/chat-tokenizer.ts';
import { inProcessGenerator, isTokenGenerator, type ForwardModel, type TokenGenerator } from '../model/import/chat-generation.ts';
import { dontKnow } from './answer-chain.ts';
import { CandidateAnswerer, composeAnswer, type CandidateKnowledgeBase, type ChosenAnswer } from './candidate-answerer.ts';
import type { MetadataFilter } from './metadata.ts';
import { questionInContext } from './follow-up.ts';

/**
 * What the answerer needs of an imported chat model: a generator of greedy ids (a worker-backed
 * model, or an in-process one's forward) and its tokenizer with the template.
 */
export interface ServedChatModel {
  model: ForwardModel | TokenGenerator;
  tokenizer: Pick<ChatTokenizer, 'encodeChat' | 'renderChat' | 'decode' | 'eosIds'>;
}

export const CHAT_SYSTEM_PROMPT =
  "You are the company's internal assistant. Answer the question using only the numbered passages from the company's documents. " +
  'Answer briefly: the fact first, in one or two sentences, in the language of the question. ' +
  'Cite each passage you use by its number in square brackets, like [1]. ' +
  'If the passages do not contain the answer, say that you do not know.';

export interface ChatModelAnswererOptions {
  kb: CandidateKnowledgeBase;
  chat: ServedChatModel;
  /** Shown under answers and stored with each answer record. */
  model: ModelInfo;
  /** Passages retrieved (default 4, as the candidate answerer). */
  passages?: number;
  /** Most tokens generated (default 256). */
  maxTokens?: number;
  /** The gate's threshold (default MIN_SUPPORT, as the candidate answerer). */
  minSupport?: number;
  filterFor?: (request: AnswerRequest) => MetadataFilter | undefined;
  logger?: Logger;
}

/** "[1] Title (source)\ntext", one block per passage. */
export function numberedPassages(passages: readonly Pick<Source, 'title' | 'source' | 'text'>[]): string {
  return passages.map((p, i) => `[${i + 1}] ${p.title || p.source}${p.title ? ` (${p.source})` : ''}\n${p.text.trim()}`).join('\n\n');
}

/** The conversation the template renders: the system message, then the passages and the question as the user's turn. */
export function chatAnswerMessages(question: string, passages: readonly Pick<Source, 'title' | 'source' | 'text'>[], system = CHAT_SYSTEM_PROMPT): ChatMessage[] {
  return [
    { role: 'system', content: system },
    { role: 'user', content: `Passages:\n\n${numberedPassages(passages)}\n\nQuestion: ${question}` },
  ];
}

/** Templates without a system role (Mistral's raise an exception): its text goes first in the user's turn. */
export function withoutSystem(messages: ChatMessage[]): ChatMessage[] {
  const system = messages.filter((m) => m.role === 'system').map((m) => m.content);
  const rest = messages.filter((m) => m.role !== 'system');
  const first = rest.findIndex((m) => m.role === 'user');
  if (first < 0 || system.length === 0) return rest;
  rest[first] = { ...rest[first]!, content: `${system.join('\n\n')}\n\n${rest[first]!.content}` };
  return rest;
}

const REFUSAL = /\b(?:(?:do|does|did)\s*(?:n['’]t|not)\s+know|not (?:in|mentioned in|covered by|stated in) the passages|(?:can(?:not|['’]t)|could(?: not|n['’]t)) find)\b|不知道|没有找到|未找到|无法回答|没有提到|未提及/i;

/**
 * The direct answer of a generated text: its first sentence (a line break ends one too: lists,
 * tables), citations and markdown removed (bold, code, headings, list markers, table pipes);
 * '' when it says it does not know.
 */
export function generatedDirect(text: string): string {
  const lines = text
    .replace(/\[\d+(?:\s*[,，、]\s*\d+)*\]/g, '')
    .replace(/\*\*|__|`+/g, '')
    .split('\n')
    .filter((line) => !/^\s*#{1,6}\s/.test(line) && !/^[\s|:-]*$/.test(line))
    .map((line) => line.replace(/^\s*(?:>\s*|[-*•+]\s+|\d+[.)]\s+)/u, '').replace(/\|/g, ' ').replace(/\s+/g, ' ').trim())
    .filter(Boolean);
  const clean = lines[0] ?? '';
  const end = /[.!?](?=\s|$)|[。！？]/u.exec(clean);
  const first = (end ? clean.slice(0, end.index + end[0].length) : clean).replace(/\s+([.,;:!?。，；：！？])/gu, '$1').trim();
  return REFUSAL.test(first) ? '' : first;
}

export class ChatModelAnswerer implements Answerer {
  readonly model: ModelInfo;
  private readonly gate: CandidateAnswerer;
  private readonly generator: TokenGenerator;

  constructor(private readonly options: ChatModelAnswererOptions) {
    this.model = options.model;
    const served = options.chat.model;
    this.generator = isTokenGenerator(served) ? served : inProcessGenerator(served);
    // Today's answerer, without a model: its retrieval and its refusal are this answerer's.
    this.gate = new CandidateAnswerer({
      kb: options.kb,
      ...(options.passages !== undefined ? { passages: options.passages } : {}),
      ...(options.minSupport !== undefined ? { minSupport: options.minSupport } : {}),
      ...(options.filterFor ? { filterFor: options.filterFor } : {}),
      ...(options.logger ? { logger: options.logger } : {}),
    });
  }

  private get contextTokens(): number {
    return this.options.chat.model.config.maxPositions;
  }

  /** Positions kept free for the answer: the token limit, at most a quarter of the context. */
  private get reserve(): number {
    return Math.max(1, Math.min(this.options.maxTokens ?? 256, Math.floor(this.contextTokens / 4)));
  }

  /** The conversation for these passages; the template may refuse a system role (then it is folded into the user's turn). */
  private messagesFor(question: string, passages: Source[]): ChatMessage[] {
    const messages = chatAnswerMessages(question, passages);
    try {
      this.options.chat.tokenizer.renderChat(messages);
      return messages;
    } catch {
      return withoutSystem(messages);
    }
  }

  /**
   * The passages that fit the context with room for the answer: all of them, else the
   * lower-ranked ones dropped (never the one the gate chose), else that one cut around its
   * supporting sentence; undefined when not even that sentence fits.
   */
  fit(question: string, sources: Source[], chosen: Pick<ChosenAnswer, 'citation' | 'support'>): { messages: ChatMessage[]; ids: number[]; used: Source[] } | undefined {
    const budget = this.contextTokens - this.reserve;
    const tokenizer = this.options.chat.tokenizer;
    const attempt = (used: Source[]) => {
      const messages = this.messagesFor(question, used);
      const ids = tokenizer.encodeChat(messages, { addGenerationPrompt: true });
      return ids.length <= budget ? { messages, ids, used } : undefined;
    };
    const cited = Math.min(Math.max(chosen.citation - 1, 0), sources.length - 1);
    const keep = sources.map((_, i) => i);
    while (keep.length > 0) {
      const fitted = attempt(keep.map((i) => sources[i]!));
      if (fitted) return fitted;
      if (keep.length === 1) break;
      const drop = keep.findLastIndex((i) => i !== cited);
      keep.splice(drop, 1);
    }
    // One passage, still too long: the largest window around the supporting sentence that fits.
    const passage = sources[cited]!;
    const text = passage.text;
    const found = text.indexOf(chosen.support);
    const start = found >= 0 ? found : 0;
    const core = found >= 0 ? chosen.support.length : Math.min(text.length, 40);
    const window = (extra: number): Source => {
      const a = Math.max(0, start - Math.floor(extra / 2));
      const b = Math.min(text.length, start + core + Math.ceil(extra / 2));
      return { ...passage, text: `${a > 0 ? '…' : ''}${text.slice(a, b).trim()}${b < text.length ? '…' : ''}` };
    };
    let best = attempt([window(0)]);
    if (!best) return undefined;
    let lo = 0;
    let hi = text.length;
    while (lo < hi) {
      const mid = Math.ceil((lo + hi) / 2);
      const fitted = attempt([window(mid)]);
      if (fitted) {
        best = fitted;
        lo = mid;
      } else hi = mid - 1;
    }
    return best;
  }

  async *answer(request: AnswerRequest): AsyncIterable<AnswerEvent> {
    const { sources, chosen, confident } = await this.gate.decide(request);
    const again = (request.avoid?.length ?? 0) > 0;
    if (!confident || !chosen) {
      // The closest sections are named, and the asker may point at one (core `fromSection`).
      yield { type: 'sources', sources: [], ...(sources.length ? { near: sources } : {}) };
      yield { type: 'token', text: dontKnow(request.question, sources, again) };
      yield { type: 'done', prompt: `(no passage answers it) ${request.question}`, direct: '' };
      return;
    }
    // "那管理岗呢？" alone means nothing to the model: it is told which question it follows.
    const fitted = this.fit(questionInContext(request.question, request.history), sources, chosen);
    if (!fitted) {
      // Never the model without the passages: it would answer from nothing.
      yield { type: 'sources', sources: [] };
      yield { type: 'token', text: dontKnow(request.question, sources, again) };
      yield { type: 'done', prompt: `(no passage fitted the model's context) ${request.question}`, direct: '' };
      return;
    }
    yield { type: 'sources', sources: fitted.used };
    const prompt = this.options.chat.tokenizer.renderChat(fitted.messages, { addGenerationPrompt: true });
    let shown = '';
    for await (const piece of this.generate(fitted.ids, request.signal)) {
      shown += piece;
      yield { type: 'token', text: piece };
    }
    if (request.signal?.aborted) return;
    if (!shown.trim()) {
      // The model ended its turn at once: the rules' answer, quoted from the passages, rather than nothing.
      this.options.logger?.warn({ model: this.model.version }, 'the chat model generated no answer: answering with the quoted passage');
      const quoted = composeAnswer({ ...chosen, citation: Math.max(1, fitted.used.indexOf(sources[chosen.citation - 1]!) + 1) });
      yield { type: 'token', text: quoted };
      yield { type: 'done', prompt, direct: chosen.direct };
      return;
    }
    yield { type: 'done', prompt, direct: generatedDirect(shown) };
  }

  /**
   * Greedy decoding after the prompt (chat-generation.ts: the prompt in batched chunks, then one
   * token at a time through the KV cache, in the worker when one holds the model). Each piece of
   * text goes out as soon as its tokens decode whole (a character whose bytes span several tokens
   * waits for the last one); leading whitespace is dropped.
   */
  private async *generate(ids: number[], signal: AbortSignal | undefined): AsyncGenerator<string> {
    const { tokenizer } = this.options.chat;
    const limit = Math.min(this.options.maxTokens ?? 256, this.contextTokens - ids.length);
    if (limit <= 0 || signal?.aborted) return;
    let pending: number[] = [];
    let started = false;
    const piece = (final: boolean): string | undefined => {
      let text = tokenizer.decode(pending);
      if (!final && text.endsWith('\uFFFD')) return undefined;
      pending = [];
      if (!started) text = text.trimStart();
      if (text) started = true;
      return text;
    };
    for await (const next of this.generator.stream(ids, { maxTokens: limit, stop: tokenizer.eosIds, ...(signal ? { signal } : {}) })) {
      pending.push(next);
      const text = piece(false);
      if (text) yield text;
    }
    if (signal?.aborted) return;
    if (pending.length) {
      const text = piece(true);
      if (text) yield text;
    }
  }
}
