/**
 * The answer chain, in LangChain Runnables:
 *
 *   retrieve (HybridRetriever) -> prompt with numbered passages -> any LangChain LLM or chat
 *   model -> text that cites passages as [1], [2]...
 *
 * `createAnswerChain` is the whole chain as one Runnable (for `invoke`/`batch`). `ChainAnswerer`
 * runs the same pieces step by step because the Bot needs, in order: the sources, the streamed
 * tokens, then the exact prompt — and because it first checks that the best passage can answer
 * the question at all (answerability.ts); below the measured threshold it says it does not know
 * instead of letting a model improvise.
 */
import type { DocumentInterface } from '@langchain/core/documents';
import type { BaseLanguageModel } from '@langchain/core/language_models/base';
import { AIMessage, HumanMessage, SystemMessage, type BaseMessage } from '@langchain/core/messages';
import { StringOutputParser } from '@langchain/core/output_parsers';
import { PromptTemplate } from '@langchain/core/prompts';
import { RunnableLambda, RunnableSequence, type Runnable } from '@langchain/core/runnables';
import type { AnswerEvent, AnswerRequest, Answerer, ConversationTurn, ModelInfo, Source } from '../core/index.ts';
import { coverage, DEFAULT_ANSWERABILITY, isAnswerable, type AnswerabilityRule } from './answerability.ts';
import { HybridRetriever } from './hybrid-retriever.ts';
import type { LocalKnowledgeBase } from './local-knowledge-base.ts';
import type { MetadataFilter } from './metadata.ts';
import { hasCjk } from '../model/text/cjk.ts';

export const ANSWER_PROMPT = PromptTemplate.fromTemplate(
  `You are the company's internal assistant. Answer the question using only the numbered passages from the company's documents below.
Cite every passage you use by its number in square brackets, like [1] or [2][3].
If the passages do not contain the answer, say that you do not know. Answer in the language of the question.

Passages:
{context}
{history}
Question: {question}
Answer:`,
);

/** "[1] Heading path (source, p. 3)\npassage text", one block per passage: the numbers the answer cites. */
export function formatPassages(documents: DocumentInterface[]): string {
  return documents
    .map((d, i) => {
      const page = typeof d.metadata.page === 'number' ? `, p. ${d.metadata.page}` : '';
      return `[${i + 1}] ${String(d.metadata.title ?? '')} (${String(d.metadata.source ?? '')}${page})\n${d.pageContent.trim()}`;
    })
    .join('\n\n');
}

function formatHistory(history: ConversationTurn[] = []): string {
  if (history.length === 0) return '';
  return `\nEarlier in this conversation:\n${history.map((t) => `${t.role === 'user' ? 'User' : 'Assistant'}: ${t.text}`).join('\n')}\n`;
}

export interface AnswerChainInput {
  question: string;
  history?: ConversationTurn[];
}

/** The whole chain as one Runnable: {question, history} -> answer text with [n] citations. */
export function createAnswerChain(retriever: HybridRetriever, llm: BaseLanguageModel): Runnable<AnswerChainInput, string> {
  const retrieve = RunnableLambda.from(async (input: AnswerChainInput) => ({
    question: input.question,
    history: formatHistory(input.history),
    documents: await retriever.invoke(input.question),
  }));
  const numberPassages = RunnableLambda.from((input: { question: string; history: string; documents: DocumentInterface[] }) => ({
    question: input.question,
    history: input.history,
    context: formatPassages(input.documents),
  }));
  return RunnableSequence.from([retrieve, numberPassages, ANSWER_PROMPT, llm, new StringOutputParser()]);
}

export interface ChainAnswererOptions {
  kb: LocalKnowledgeBase;
  /** Any LangChain LLM or chat model (the project's own model behind one, or a test double). */
  llm: BaseLanguageModel;
  /** Shown under answers and stored with each answer record. */
  model: ModelInfo;
  /** Passages put in the prompt (default 4). */
  passages?: number;
  /** Default: the measured rule for this knowledge base (with or without a trained encoder). */
  answerability?: AnswerabilityRule;
  /** Restricts retrieval per request, e.g. to the knowledge base a channel is bound to. */
  filterFor?: (request: AnswerRequest) => MetadataFilter | undefined;
  /**
   * Builds the model's input as chat messages instead of ANSWER_PROMPT's one block of text. The
   * project's own model uses CHAT_TEMPLATE_PROMPT: passages in the template's context block,
   * earlier turns as turns, as SFT trained it.
   */
  messages?: (input: { question: string; history: ConversationTurn[]; passages: string; documents: Source[] }) => BaseMessage[];
}

/** Passages as a system message named "context" (LocalChatModel puts it in <|context|>), history as turns, the question last. */
export function CHAT_TEMPLATE_PROMPT(input: { question: string; history: ConversationTurn[]; passages: string }): BaseMessage[] {
  return [
    new SystemMessage({ content: input.passages, name: 'context' }),
    ...input.history.map((t) => (t.role === 'user' ? new HumanMessage(t.text) : new AIMessage(t.text))),
    new HumanMessage(input.question),
  ];
}

export class ChainAnswerer implements Answerer {
  readonly model: ModelInfo;
  private readonly generate: Runnable<unknown, string>;

  constructor(private readonly options: ChainAnswererOptions) {
    this.model = options.model;
    this.generate = options.llm.pipe(new StringOutputParser()) as Runnable<unknown, string>;
  }

  async *answer(request: AnswerRequest): AsyncIterable<AnswerEvent> {
    const filter = this.options.filterFor?.(request);
    const retriever = new HybridRetriever({ kb: this.options.kb, k: this.options.passages ?? 4, ...(filter ? { filter } : {}) });
    const documents = await retriever.invoke(request.question, { ...(request.signal ? { signal: request.signal } : {}) });
    const rule = this.options.answerability ?? (this.options.kb.embeddings ? DEFAULT_ANSWERABILITY.withEncoder : DEFAULT_ANSWERABILITY.keywordsOnly);
    const top = documents[0];
    const answerable =
      top !== undefined &&
      isAnswerable(
        {
          coverage: coverage(request.question, { title: String(top.metadata.title ?? ''), text: top.pageContent }),
          ...(typeof top.metadata.cosine === 'number' ? { cosine: top.metadata.cosine } : {}),
        },
        rule,
      );
    const used = answerable ? documents : [];
    yield { type: 'sources', sources: used.map(documentToSource) };
    if (!answerable) {
      yield { type: 'token', text: dontKnow(request.question, documents.map(documentToSource)) };
      yield { type: 'done', prompt: `(no passage passed the answerability threshold) ${request.question}` };
      return;
    }
    const prompt = this.options.messages
      ? this.options.messages({ question: request.question, history: request.history, passages: formatPassages(used), documents: used.map(documentToSource) })
      : await ANSWER_PROMPT.invoke({ question: request.question, history: formatHistory(request.history), context: formatPassages(used) });
    // Messages that carry no passages (none fitted the model's context) would let the model answer
    // from nothing: an answer must come from the passages, so the bot says it does not know.
    if (Array.isArray(prompt) && !prompt.some((m) => m.getType() === 'system' && m.name === 'context')) {
      yield { type: 'token', text: dontKnow(request.question) };
      yield { type: 'done', prompt: `(no passage fitted the model's context) ${request.question}`, direct: '' };
      return;
    }
    const stream = await this.generate.stream(prompt, { ...(request.signal ? { signal: request.signal } : {}) });
    for await (const text of stream) if (text) yield { type: 'token', text };
    // Kept in the answer record: what the model saw, so votes can become training data.
    const recorded = Array.isArray(prompt) ? recordedMessages(prompt) : prompt.toString();
    yield { type: 'done', prompt: recorded };
  }
}

/** Chat messages as the answer record keeps them: `[{role, name?, content}]` JSON. */
export function recordedMessages(messages: BaseMessage[]): string {
  return JSON.stringify(messages.map((m) => ({ role: m.getType(), ...(m.name ? { name: m.name } : {}), content: m.content })));
}

export function documentToSource(d: DocumentInterface): Source {
  return {
    source: String(d.metadata.source ?? ''),
    title: String(d.metadata.title ?? ''),
    text: d.pageContent,
    score: typeof d.metadata.score === 'number' ? d.metadata.score : 0,
  };
}

export function dontKnow(question: string, near: readonly Pick<Source, 'title' | 'source'>[] = [], again = false): string {
  // The sections retrieval ranked first, named but not quoted: an employee whose words missed the
  // answer can open them, and the bot states nothing they do not support.
  const titles = [...new Set(near.map((p) => (p.title || p.source).replace(/ > /g, ' › ').trim()).filter(Boolean))].slice(0, 2);
  if (hasCjk(question)) {
    const leads = titles.length ? `最接近的章节：${titles.map((t) => `《${t}》`).join('、')}。` : '';
    return `${again ? '知识库里没有找到别的答案。' : '抱歉，我在知识库里没有找到相关内容。'}${leads}可以换个说法再问，或者联系相关负责人。`;
  }
  const leads = titles.length ? ` The closest sections I found: ${titles.map((t) => `"${t}"`).join(', ')}.` : '';
  return `${again ? 'I found no other answer to that in the knowledge base.' : "Sorry, I couldn't find that in the knowledge base."}${leads} Try rephrasing, or ask the team that owns the topic.`;
}
