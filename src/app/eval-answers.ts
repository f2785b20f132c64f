/**
 * `teamllm eval qa` as a user judges answers (the default when the bot serves candidate answers):
 * every question goes through the answerer the bot serves — retrieval, the "don't know" gate, the
 * model's choice, the composed text — and, in the same table, through the no-model answerer
 * (retrieval-only quotes) and the parts of the served one (`--ablation`): candidates weighed by
 * the rules alone, the learned selector without the model's score. Questions with answer
 * "UNANSWERABLE" count as questions the bot must decline. An imported chat model is evaluated
 * through the answerer that serves it (rag/chat-model-answerer.ts).
 */
import { existsSync } from 'node:fs';
import { LoadedModel } from '../model/loaded-model.ts';
import { ModelRegistry } from '../model/registry.ts';
import { ServedModels } from '../model/lora/served-models.ts';
import { answerSettings } from '../model/answer-settings.ts';
import { ModelCandidateScorer } from '../rag/model-candidate-scorer.ts';
import { CandidateAnswerer, type CandidateKnowledgeBase } from '../rag/candidate-answerer.ts';
import { DEFAULT_SELECTOR } from '../rag/answer-selector.ts';
import { RetrievalOnlyAnswerer } from '../rag/retrieval-only-answerer.ts';
import { ChatModelAnswerer } from '../rag/chat-model-answerer.ts';
import { loadChatModelVersion } from '../model/import/chat-manifest.ts';
import type { Answerer } from '../core/index.ts';
import { evaluateAnswers, formatAnswerScores, type AnswerEvalScores } from '../training/eval/answer-eval.ts';
import { readQaQuestions } from '../training/eval/qa-eval.ts';
import { EvalQaError } from './eval-qa.ts';

export interface EvalAnswersOptions {
  home: string;
  kb: CandidateKnowledgeBase & ConstructorParameters<typeof RetrievalOnlyAnswerer>[0];
  questions: string;
  split?: string;
  /** Registry version (default: the serving one; none: only the no-model rows). */
  model?: string;
  /** Also the served answerer's parts: rules alone, selector without the model. */
  ablation?: boolean;
  json?: boolean;
  out: (text: string) => void;
  progress?: (text: string) => void;
}

export interface EvalAnswersReport {
  questions: string;
  split: string | null;
  model: string | null;
  rows: { label: string; scores: AnswerEvalScores }[];
}

export async function evalAnswers(o: EvalAnswersOptions): Promise<EvalAnswersReport> {
  if (!existsSync(o.questions)) throw new EvalQaError(`no questions file ${o.questions}`);
  const all = await readQaQuestions(o.questions).catch((err: Error) => Promise.reject(new EvalQaError(err.message)));
  const questions = o.split ? all.filter((q) => q.split === o.split) : all;
  if (questions.length === 0) {
    const splits = [...new Set(all.map((q) => q.split).filter(Boolean))];
    throw new EvalQaError(`no questions${o.split ? ` in split "${o.split}"` : ''} in ${o.questions}${splits.length ? ` (splits: ${splits.join(', ')})` : ''}`);
  }
  const registry = new ModelRegistry(o.home);
  const version = o.model ?? (await registry.serving())?.version;
  if (o.model && !(await registry.get(o.model))) throw new EvalQaError(`no model version ${o.model} (see teamllm model list)`);
  const served = new ServedModels(registry);
  try {
    const answerers: { label: string; answerer: Answerer }[] = [{ label: 'no model: retrieval-only quotes', answerer: new RetrievalOnlyAnswerer(o.kb) }];
    if (o.ablation) answerers.push({ label: 'candidates, rules alone (no learning)', answerer: new CandidateAnswerer({ kb: o.kb, selector: DEFAULT_SELECTOR }) });
    const entry = version ? await registry.get(version) : undefined;
    if (version && entry?.kind === 'chat') {
      // An imported chat model: the answerer the bot serves with it (the same gate, its own words).
      await registry.assertIntact(version);
      const chat = loadChatModelVersion(registry.dir(version));
      const model = { name: entry.name ?? entry.architecture ?? 'imported chat model', version, kind: 'language-model' as const };
      answerers.push({ label: `served: ${version} (imported chat model, generated through its template)`, answerer: new ChatModelAnswerer({ kb: o.kb, chat, model }) });
    } else if (version) {
      const model: LoadedModel = (await served.load(version)).model;
      const scorer = new ModelCandidateScorer(model, answerSettings(model));
      if (o.ablation && scorer.selector) {
        answerers.push({ label: `candidates, ${version}'s selector without the model score`, answerer: new CandidateAnswerer({ kb: o.kb, selector: { ...scorer.selector, weights: { ...scorer.selector.weights, model: 0 } } }) });
      }
      answerers.push({ label: `served: ${version}${scorer.selector?.trained ? ' + its trained selector' : ''}`, answerer: new CandidateAnswerer({ kb: o.kb, scorer }) });
    }
    const rows: EvalAnswersReport['rows'] = [];
    for (const { label, answerer } of answerers) {
      rows.push({ label, scores: await evaluateAnswers({ answerer, questions, progress: (done, total) => o.progress?.(`${label}: ${done}/${total}`) }) });
    }
    const report: EvalAnswersReport = { questions: o.questions, split: o.split ?? null, model: version ?? null, rows };
    if (o.json) o.out(`${JSON.stringify(report)}\n`);
    else {
      const un = rows[0]!.scores.unanswerable;
      o.out(`${questions.length} questions${o.split ? ` (split "${o.split}")` : ''} from ${o.questions}${un ? ` (${un} unanswerable)` : ''}; answers as the bot composes them\n`);
      o.out(`${formatAnswerScores(rows)}\n`);
      if (!version) o.out('No model version serves: only the no-model rows. Train one (teamllm quickstart) to compare.\n');
    }
    return report;
  } finally {
    served.close();
  }
}
