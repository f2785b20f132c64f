/**
 * The project's own model as the judge of candidate answers (rag/candidate-answerer.ts): each
 * candidate's score is its mean log-probability per token — the answer's tokens and the end token
 * — after the QA prompt the model was fine-tuned on (the same passages fitted the same way,
 * `encodeQaPrompt`). A mean, not a sum, so that a long sentence is not out-scored by a two-token
 * value just for being long. DPO, KTO and PPO optimise exactly these log-probabilities, which is
 * how votes move the choice.
 */
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { ConversationTurn, ModelInfo, Source } from '../core/index.ts';
import type { ChatMessage } from '../model/chat-template.ts';
import type { LoadedModel } from '../model/loaded-model.ts';
import type { CandidateScorer } from './candidate-answerer.ts';
import { parseSelector, type SelectorWeights } from './answer-selector.ts';
import { encodeQaPrompt } from '../model/qa-prompt.ts';
import { answerLogProbs } from '../model/answer-log-probs.ts';
import { answerSettings, type AnswerSettings } from '../model/answer-settings.ts';
import { qaPromptMessages } from './qa-prompt-messages.ts';
import { recordedMessages } from './answer-chain.ts';

export class ModelCandidateScorer implements CandidateScorer {
  readonly model: ModelInfo;
  readonly selector: SelectorWeights | undefined;

  constructor(
    private readonly local: LoadedModel,
    private readonly settings: Pick<AnswerSettings, 'maxTokens' | 'maxContextTokens' | 'systemPrompt'>,
  ) {
    this.model = { name: 'teamllm', version: local.info.version, kind: 'language-model' };
    this.selector = readSelector(local.info.dir);
  }

  private promptTokens(input: { question: string; history: ConversationTurn[]; passages: Source[] }): number[] {
    const history: ChatMessage[] = input.history.map((t) => ({ role: t.role === 'user' ? 'user' : 'assistant', content: t.text }));
    return encodeQaPrompt(
      this.local.tokenizer,
      {
        question: input.question,
        passages: input.passages.map(({ source, title, text }) => ({ source, title, text })),
        history,
        ...(this.settings.systemPrompt ? { systemPrompt: this.settings.systemPrompt } : {}),
      },
      { blockSize: this.local.blockSize, reserve: this.settings.maxTokens, ...(this.settings.maxContextTokens ? { maxContextTokens: this.settings.maxContextTokens } : {}) },
    );
  }

  async score(input: { question: string; history: ConversationTurn[]; passages: Source[]; answers: string[]; signal?: AbortSignal }): Promise<number[]> {
    const prompt = this.promptTokens(input);
    const end = this.local.tokenizer.special.end;
    const room = this.local.blockSize - prompt.length;
    const episodes = input.answers.map((a) => {
      const ids = this.local.tokenizer.encode(a);
      // An answer longer than the room left is scored on its beginning (the model sees no more either).
      const answer = end === undefined ? ids : [...ids, end];
      return { prompt, answer: answer.slice(0, Math.max(1, room)) };
    });
    input.signal?.throwIfAborted();
    const { logp } = answerLogProbs(this.local.gpt, episodes, end ?? 0);
    return logp.map((l) => (l.length ? l.reduce((a, b) => a + b, 0) / l.length : -Infinity));
  }

  /** The chat the scores were computed after (context, earlier turns, question), as the answer record keeps prompts. */
  prompt(input: { question: string; history: ConversationTurn[]; passages: Source[] }): string {
    return recordedMessages(qaPromptMessages(this.local, { ...answerSettings(this.local), ...this.settings })({ question: input.question, history: input.history, documents: input.passages }));
  }
}

/** The file a model version keeps its trained answer selector in. */
export const SELECTOR_FILE = 'answer-selector.json';

/** The selector trained with a model (in its folder), if any; a damaged file is ignored (the default weighs instead). */
export function readSelector(dir: string): SelectorWeights | undefined {
  const file = join(dir, SELECTOR_FILE);
  if (!existsSync(file)) return undefined;
  try {
    return parseSelector(JSON.parse(readFileSync(file, 'utf8')));
  } catch {
    return undefined;
  }
}
