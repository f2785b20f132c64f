/**
 * The QA evaluation of an RLHF run (retrieval in the loop, as the SFT job measures it): RLHF must
 * not buy reward with accuracy, so the gate compares it before and after.
 */
import { existsSync } from 'node:fs';
import path from 'node:path';
import type { ChatTokenizer } from '../../model/import/chat-tokenizer.ts';
import type { LlamaModel } from '../../model/import/llama.ts';
import { LoadedModel } from '../../model/loaded-model.ts';
import type { TrainingKnowledgeBase } from '../../rag/knowledge-base-opener.ts';
import { evaluateChatQa } from '../eval/chat-qa-eval.ts';
import { evaluateQa, readQaQuestions, type QaScores } from '../eval/qa-eval.ts';
import type { RlhfJobContext, RlhfJobOptions } from './job-spec.ts';

const SAMPLE_HANDBOOK = path.resolve(path.dirname(new URL(import.meta.url).pathname), '../../../examples/handbook');

/** The folder sources are named relative to (as the SFT job does): the folder itself, or the common parent. */
function commonParent(paths: string[]): string {
  const dirs = paths.map((p) => path.resolve(p)).map((p) => (existsSync(p) && !/\.(md|txt|markdown|html|pdf|docx)$/i.test(p) ? p : path.dirname(p)));
  if (dirs.length === 1) return dirs[0]!;
  const parts = dirs.map((d) => d.split(path.sep));
  const out: string[] = [];
  for (let i = 0; parts.every((p) => p[i] !== undefined && p[i] === parts[0]![i]); i++) out.push(parts[0]![i]!);
  return out.join(path.sep) || path.sep;
}

/** The model answering: one trained here (the adapter, when attached, answers with it), or an imported chat model's engine through its template. */
export type QaModel = LoadedModel | { engine: LlamaModel; tokenizer: ChatTokenizer };

export interface QaCheck {
  /** The scratch knowledge base it indexed, if any: the caller closes it when the job ends. */
  kb?: TrainingKnowledgeBase;
  /** Scores of the model `answerer` gives (asked only when there are questions), or undefined when there is nothing to evaluate (no held-out questions, or skipQa). */
  run(label: string, answerer: () => QaModel | Promise<QaModel>): Promise<QaScores | undefined>;
}

/**
 * Questions come from `questions`, else $TEAMLLM_HOME/eval (or the sample handbook's, when the documents are the
 * sample handbook's); documents from `docs`, else $TEAMLLM_HOME/corpus, else the sample handbook.
 */
export async function prepareQaCheck(p: RlhfJobOptions, ctx: RlhfJobContext, log: (line: string) => void): Promise<QaCheck> {
  const { home, runDir } = ctx;
  const homeCorpus = path.join(home, 'corpus');
  const docs = p.docs ?? (existsSync(homeCorpus) ? [homeCorpus] : [path.join(SAMPLE_HANDBOOK, 'en'), path.join(SAMPLE_HANDBOOK, 'zh')]);
  const questionsFile =
    p.questions ??
    (existsSync(path.join(home, 'eval', 'questions.jsonl'))
      ? path.join(home, 'eval', 'questions.jsonl')
      : docs.every((d) => path.resolve(d).startsWith(SAMPLE_HANDBOOK))
        ? path.join(SAMPLE_HANDBOOK, 'questions.jsonl')
        : undefined);
  let kb: TrainingKnowledgeBase | undefined;
  let retriever = ctx.retriever;
  const qaQuestions = !p.skipQa && questionsFile ? (await readQaQuestions(questionsFile)).filter((q) => q.split === p.evalSplit) : [];
  if (qaQuestions.length && !retriever) {
    kb = ctx.knowledgeBases.scratch(path.join(runDir, 'kb.sqlite'));
    await kb.addPaths(docs, { baseDir: commonParent(docs) });
    retriever = kb;
  }
  const run = async (label: string, answerer: () => QaModel | Promise<QaModel>): Promise<QaScores | undefined> => {
    if (!qaQuestions.length || !retriever) return undefined;
    const model = await answerer();
    const common = {
      kb: retriever,
      questions: qaQuestions,
      k: p.k,
      maxTokens: p.answerTokens,
      ...(ctx.signal ? { signal: ctx.signal } : {}),
      onQuestion: (done: number, total: number) => ctx.progress?.({ stage: 'evaluate', step: done, totalSteps: total }),
    };
    const scores = model instanceof LoadedModel ? await evaluateQa({ ...common, model }) : await evaluateChatQa({ ...common, model: model.engine, tokenizer: model.tokenizer, name: label });
    log(`QA ${label}: EM ${(100 * scores.exactMatch).toFixed(1)}%, F1 ${(100 * scores.f1).toFixed(1)}%, contains gold ${(100 * scores.containsGold).toFixed(1)}% (n=${scores.n})`);
    return scores;
  };
  return { ...(kb ? { kb } : {}), run };
}
