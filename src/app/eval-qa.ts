/**
 * `teamllm eval qa --questions file.jsonl [--split test] [--model v3] [--adapter name] [--k 3]
 * [--max-tokens 32] [--decoding extractive|free] [--no-compare] [--json]`: answer quality with
 * retrieval in the loop — each question's passages come from this home's knowledge base (as the
 * bot retrieves them), the model answers greedily with the decoding the bot serves it with (the
 * model's meta `decoding`, see src/model/answer-settings.ts; `--decoding` overrides), and exact
 * match, token F1 and "contains the gold fact" are printed.
 *
 * A fine-tuned model is printed beside its base (the version it was trained from, or the model an
 * `--adapter` is loaded onto) with the same prompts, and the verdict of the promotion rule
 * (compareQa): before and after fine-tuning in one table.
 */
import { existsSync } from 'node:fs';
import { LoadedModel } from '../model/loaded-model.ts';
import { ModelRegistry } from '../model/registry.ts';
import { AdapterSet } from '../model/lora/serving.ts';
import { AdapterStore } from '../model/lora/store.ts';
import { ServedModels } from '../model/lora/served-models.ts';
import { DECODING_MODES, type DecodingMode } from '../model/extractive.ts';
import { decodingOf } from '../model/answer-settings.ts';
import { compareQa, evaluateQa, formatQaScores, readQaQuestions, type QaComparison, type QaRetriever, type QaScores } from '../training/eval/qa-eval.ts';

/** A user error: printed plainly by the CLI. */
export class EvalQaError extends Error {}

export interface EvalQaOptions {
  home: string;
  kb: QaRetriever;
  questions: string;
  split?: string;
  /** Registry version (default: the serving one). */
  model?: string;
  /** An adapter of $TEAMLLM_HOME/adapters, loaded onto the model. */
  adapter?: string;
  /** Passages per question (default: what the model was fine-tuned with, else 3). */
  k?: number;
  /** Answer tokens at most (default: what the model was fine-tuned with, else 32). */
  maxTokens?: number;
  /** 'extractive' or 'free' (default: the evaluated model's, as the bot serves it). The base row uses the same. */
  decoding?: string;
  /** Also evaluate the base of a fine-tuned model (default true). */
  compare?: boolean;
  json?: boolean;
  out: (text: string) => void;
  progress?: (text: string) => void;
}

export interface EvalQaReport {
  questions: string;
  split: string | null;
  k: number;
  maxTokens: number;
  decoding: DecodingMode;
  rows: { label: string; scores: QaScores }[];
  comparison?: Pick<QaComparison, 'delta' | 'improved' | 'metric' | 'verdict'>;
}

/** How the model was prompted in fine-tuning (adapter meta, or the merged model's LoRA record). */
function trainedPrompt(model: LoadedModel): { k?: number; maxTokens?: number; maxContextTokens?: number; systemPrompt?: string; decoding: DecodingMode } {
  const meta = model.info.meta as { adapter?: Record<string, unknown>; lora?: { meta?: Record<string, unknown> } };
  const m = meta.adapter ?? meta.lora?.meta ?? {};
  const prompt = (m.prompt ?? {}) as { maxContextTokens?: number; systemPrompt?: string };
  return {
    ...(typeof m.retrievalK === 'number' ? { k: m.retrievalK } : {}),
    ...(typeof m.answerTokens === 'number' ? { maxTokens: m.answerTokens } : {}),
    ...(typeof prompt.maxContextTokens === 'number' ? { maxContextTokens: prompt.maxContextTokens } : {}),
    ...(typeof prompt.systemPrompt === 'string' ? { systemPrompt: prompt.systemPrompt } : {}),
    decoding: decodingOf(m),
  };
}

export async function evalQa(o: EvalQaOptions): Promise<EvalQaReport> {
  if (o.decoding !== undefined && !DECODING_MODES.includes(o.decoding as DecodingMode)) throw new EvalQaError(`--decoding must be ${DECODING_MODES.join(' or ')} (got "${o.decoding}")`);
  if (!existsSync(o.questions)) throw new EvalQaError(`no questions file ${o.questions}`);
  let all;
  try {
    all = await readQaQuestions(o.questions);
  } catch (err) {
    throw new EvalQaError((err as Error).message);
  }
  const questions = o.split ? all.filter((q) => q.split === o.split) : all;
  if (questions.length === 0) {
    const splits = [...new Set(all.map((q) => q.split).filter(Boolean))];
    throw new EvalQaError(`no questions${o.split ? ` in split "${o.split}"` : ''} in ${o.questions}${splits.length ? ` (splits: ${splits.join(', ')})` : ''}`);
  }

  const registry = new ModelRegistry(o.home);
  const versions = await registry.list();
  if (versions.length === 0) {
    throw new EvalQaError('no model is trained yet, so there is nothing to answer with: train one first (teamllm train pretrain, then teamllm train sft). teamllm eval retrieval measures retrieval alone.');
  }
  const version = o.model ?? versions.find((v) => v.serving)?.version;
  if (!version) throw new EvalQaError(`no model version is serving: pass --model <version> (${versions.map((v) => v.version).join(', ')}; see teamllm model list)`);
  const entry = versions.find((v) => v.version === version);
  if (!entry) throw new EvalQaError(`no model version ${version} (have ${versions.map((v) => v.version).join(', ')}; see teamllm model list)`);

  // What is evaluated, and the base it is compared with.
  const served = new ServedModels(registry);
  let set: AdapterSet | undefined;
  const rows: { label: string; model: LoadedModel }[] = [];
  try {
    if (o.adapter) {
      const stored = await new AdapterStore(o.home).get(o.adapter).catch((e: Error) => Promise.reject(new EvalQaError(e.message)));
      if (!stored) {
        const names = (await new AdapterStore(o.home).list()).map((a) => a.name);
        throw new EvalQaError(`no adapter "${o.adapter}" in ${o.home}/adapters${names.length ? ` (have ${names.join(', ')})` : ''}`);
      }
      set = new AdapterSet(await LoadedModel.load(registry.dir(version), version));
      await set.load(o.adapter, stored.dir).catch((e: Error) => Promise.reject(new EvalQaError(e.message)));
      if (o.compare !== false) rows.push({ label: version, model: set.model(null) });
      rows.push({ label: `${version} + ${o.adapter}`, model: set.model(o.adapter) });
    } else {
      const parent = entry.parent && versions.some((v) => v.version === entry.parent) ? entry.parent : undefined;
      if (parent && o.compare !== false) rows.push({ label: `${parent} (base)`, model: (await served.load(parent)).model });
      rows.push({ label: parent ? `${version} (fine-tuned)` : version, model: (await served.load(version)).model });
    }
    const target = rows.at(-1)!.model;
    const trained = trainedPrompt(target);
    const k = o.k ?? trained.k ?? 3;
    const maxTokens = o.maxTokens ?? trained.maxTokens ?? 32;
    const decoding = (o.decoding as DecodingMode | undefined) ?? trained.decoding;
    const scored: { label: string; scores: QaScores }[] = [];
    for (const row of rows) {
      const scores = await evaluateQa({
        model: row.model,
        kb: o.kb,
        questions,
        k,
        maxTokens,
        ...(trained.maxContextTokens ? { maxContextTokens: trained.maxContextTokens } : {}),
        ...(trained.systemPrompt ? { systemPrompt: trained.systemPrompt } : {}),
        decoding,
        onQuestion: (done, total) => o.progress?.(`QA ${row.label}: ${done}/${total}`),
      });
      scored.push({ label: row.label, scores: { ...scores, model: row.label } });
    }
    const comparison = scored.length === 2 ? compareQa(scored[0]!.scores, scored[1]!.scores) : undefined;
    const report: EvalQaReport = {
      questions: o.questions,
      split: o.split ?? null,
      k,
      maxTokens,
      decoding,
      rows: scored,
      ...(comparison ? { comparison: { delta: comparison.delta, improved: comparison.improved, metric: comparison.metric, verdict: comparison.verdict } } : {}),
    };
    if (o.json) o.out(`${JSON.stringify(report)}\n`);
    else {
      o.out(`${questions.length} questions${o.split ? ` (split "${o.split}")` : ''} from ${o.questions}; ${k} passages each from the knowledge base; answers of at most ${maxTokens} tokens, ${decoding} decoding\n`);
      o.out(`${formatQaScores(scored)}\n`);
      if (comparison) o.out(`${comparison.verdict.replace(/: it is not promoted\.$/, '.')}\n`);
    }
    return report;
  } finally {
    set?.dispose();
    served.close();
  }
}
