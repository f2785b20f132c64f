/** `teamllm eval retrieval`: recall@1, recall@5 and MRR of each retriever on a question set (src/rag/retrieval-eval.ts). */
import { evaluateRetrieval, formatEvaluation } from '../rag/index.ts';
import { importedEmbeddings } from './encoders.ts';

/**
 * The evaluation as the table to print, or as one JSON line's text. `encoder`: an imported encoder
 * version of `home` (teamllm model import) for the dense side, instead of one trained on the folder.
 */
export async function evalRetrieval(o: { questions: string; kb: string; split?: string; json?: boolean; encoder?: string; home?: string; progress: (message: string) => void }): Promise<string> {
  if (o.encoder && !o.home) throw new Error('an imported encoder needs the home it was imported into');
  const embeddings = o.encoder ? await importedEmbeddings(o.home!, o.encoder) : undefined;
  const evaluation = await evaluateRetrieval({
    ...(embeddings ? { embeddings } : {}),
    questionsFile: o.questions,
    kbDir: o.kb,
    ...(o.split !== undefined ? { split: o.split } : {}),
    onProgress: o.progress,
  });
  return o.json ? JSON.stringify(evaluation) : formatEvaluation(evaluation);
}
