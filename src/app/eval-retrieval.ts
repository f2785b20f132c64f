/** `teamllm eval retrieval`: recall@1, recall@5 and MRR of each retriever on a question set (src/rag/retrieval-eval.ts). */
import { evaluateRetrieval, formatEvaluation } from '../rag/index.ts';

/** The evaluation as the table to print, or as one JSON line's text. */
export async function evalRetrieval(o: { questions: string; kb: string; split?: string; json?: boolean; progress: (message: string) => void }): Promise<string> {
  const evaluation = await evaluateRetrieval({
    questionsFile: o.questions,
    kbDir: o.kb,
    ...(o.split !== undefined ? { split: o.split } : {}),
    onProgress: o.progress,
  });
  return o.json ? JSON.stringify(evaluation) : formatEvaluation(evaluation);
}
