/**
 * The whole fine-tuning job (`/train sft`, `teamllm train sft`): pick the base, gather SFT data
 * (files, 👍 exports, examples generated from the documents, the train split of a question set)
 * with retrieved passages as context, measure QA before, train the LoRA adapter, measure QA
 * after, and only register (and, when asked, promote) an adapter that beats its base on the
 * held-out questions.
 */
import { existsSync } from 'node:fs';
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { z } from 'zod';
import type { JobProgress } from '../../core/index.ts';
import { ModelRegistry } from '../../model/registry.ts';
import { LoadedModel } from '../../model/loaded-model.ts';
import { writeJsonAtomic } from '../../model/files.ts';
import { AdapterSet } from '../../model/lora/serving.ts';
import { AdapterStore } from '../../model/lora/store.ts';
import { attachAdapterToVersion } from '../../model/lora/served-models.ts';
import type { KnowledgeBaseOpener } from '../../rag/knowledge-base-opener.ts';
import { compareQa, evaluateQa, formatQaScores, containsGold, type QaComparison, type QaQuestion, type QaScores } from '../eval/qa-eval.ts';
import { formatContext } from '../../model/qa-prompt.ts';
import { CHAT_MANIFEST, loadChatModelVersion } from '../../model/import/chat-manifest.ts';
import type { LlamaModel } from '../../model/import/llama.ts';
import { mergeLoraIntoChatModel } from '../../model/lora/imported-base.ts';
import { readPeftAdapter } from '../../model/lora/peft.ts';
import { evaluateChatQa } from '../eval/chat-qa-eval.ts';
import type { SftExample } from './data.ts';
import { documentsFromPassages, generateQa, holdOutBySection, readDocuments, withRetrievedContext, type SourceDocument } from './qa-generator.ts';
import { readGateQuestions } from './question-sets.ts';
import { sft, type SftProgress, type SftResult } from './train.ts';
import { latestCheckpoint } from '../checkpoint.ts';
import { resolveBase } from '../base-model.ts';
import { bool, int, list, num } from '../stages/stage-params.ts';

const SAMPLE_HANDBOOK = path.resolve(path.dirname(new URL(import.meta.url).pathname), '../../../examples/handbook');


/** Parameters of `/train sft key=value ...` (strings from chat or --set, or typed from code). */
/** A progress event of the SFT job as a job's progress (the chat message, the CLI bar, the quickstart). */
export function sftJobProgress(ev: SftProgress & { stage: string }): JobProgress {
  return {
    stage: ev.stage,
    step: ev.step,
    totalSteps: ev.totalSteps,
    ...(Number.isFinite(ev.loss) ? { loss: ev.loss } : {}),
    ...(ev.valLoss !== undefined ? { valLoss: ev.valLoss } : {}),
    ...(ev.tokensPerSec ? { tokensPerSec: ev.tokensPerSec } : {}),
    ...(ev.etaSec ? { etaSec: ev.etaSec } : {}),
  };
}

export const SftJobParamsSchema = z
  .object({
    /** Base model: a registry version (default: the serving one, else the newest) or a model folder. */
    base: z.string().optional(),
    /** SFT JSONL files or folders (alpaca, sharegpt, messages / 👍 export, question/answer). */
    data: list().optional(),
    /**
     * Documents to index for retrieval and to generate QA from. Default: the documents in the
     * knowledge base (`kb`), retrieved as the bot retrieves them; when it is empty,
     * $TEAMLLM_HOME/corpus, else the sample handbook.
     */
    docs: list().optional(),
    /** The knowledge base whose documents are learnt when no `docs` are given (default: the default one). */
    kb: z.string().regex(/^[a-zA-Z0-9._-]{1,64}$/, 'a knowledge base name (letters, digits, . _ -)').optional(),
    /** Generate QA examples from the documents (default: yes). */
    generate: bool().optional(),
    generateMax: int().optional(),
    /**
     * Questions JSONL ({question, answer | must_contain, source?, split?}; "UNANSWERABLE" rows are
     * skipped); the `evalSplit` part is held out for evaluation — all of them when no row has that split.
     * Default: $TEAMLLM_HOME/eval/questions.jsonl, or the sample's with the sample handbook; `none`: no
     * question set (the evaluation then asks held-out generated questions, `holdOut`).
     */
    questions: z.string().optional(),
    evalSplit: z.string().default('test'),
    /**
     * Without held-out questions, this share of the generated questions (at least 20 when there are
     * 80, by whole sections: nothing trained on shares a passage with them) is held out for the
     * evaluation (`holdOutBySection`); 0: none.
     */
    holdOut: num().pipe(z.number().min(0).max(0.5)).default(0.1),
    /** At most this many held-out generated questions are asked. */
    holdOutMax: int().default(50),
    /** Use the questions of the other splits as training examples (default: yes). */
    trainOnQuestions: bool().default(true),
    /** Passages retrieved per question, for training contexts and the evaluation. */
    k: int().default(3),
    rank: int().optional(),
    alpha: num().optional(),
    dropout: num().optional(),
    targets: z.string().optional(),
    epochs: num().optional(),
    maxIters: int().optional(),
    batchSize: int().optional(),
    gradAccumSteps: int().optional(),
    learningRate: num().optional(),
    warmupIters: int().optional(),
    evalInterval: int().optional(),
    checkpointInterval: int().optional(),
    maxContextTokens: int().optional(),
    systemPrompt: z.string().optional(),
    seed: z.coerce.number().int().optional(),
    backend: z.string().optional(),
    /** 'auto': promote when it beats its base and the base is serving; 'never': only register. */
    promote: z.enum(['auto', 'never']).default('auto'),
    /** Name in $TEAMLLM_HOME/adapters (default <base>-sft-<run folder>). */
    name: z.string().optional(),
    /** Answer tokens in the QA evaluation. */
    answerTokens: int().default(32),
    /**
     * How answers are decoded, in the before/after evaluation and then by the bot (written into the
     * adapter's meta, read by src/model/answer-settings.ts): 'extractive' copies verbatim spans of
     * the retrieved passages (src/model/extractive.ts), 'free' lets the model write anything.
     */
    decoding: z.enum(['extractive', 'free']).default('free'),
    /** Skip the QA evaluation (then nothing is promoted). */
    skipEval: bool().default(false),
  })
  .strict();

export type SftJobParams = z.input<typeof SftJobParamsSchema>;

export interface SftJobContext {
  home: string;
  runDir: string;
  /** The home's knowledge base to learn from, or a scratch one in the run folder for `docs`. */
  knowledgeBases: KnowledgeBaseOpener;
  signal?: AbortSignal;
  log?: (line: string) => void;
  progress?: (ev: SftProgress & { stage: 'sft' | 'evaluate' | 'prepare' }) => void;
}

export interface SftJobResult {
  status: 'completed' | 'aborted';
  summary: string;
  training: SftResult;
  baseVersion?: string;
  before?: QaScores;
  after?: QaScores;
  comparison?: QaComparison;
  /** Registry version of the merged model (only when it beat its base, or when not evaluated). */
  modelVersion?: string;
  promoted: boolean;
  adapterName?: string;
  report: string;
}

function commonParent(paths: string[]): string {
  const abs = paths.map((p) => path.resolve(p));
  const dirs = abs.map((p) => (existsSync(p) && !p.match(/\.(md|txt|markdown)$/i) ? p : path.dirname(p)));
  if (dirs.length === 1) return dirs[0]!;
  const parts = dirs.map((d) => d.split(path.sep));
  const out: string[] = [];
  for (let i = 0; ; i++) {
    const seg = parts[0]![i];
    if (seg === undefined || parts.some((p) => p[i] !== seg)) break;
    out.push(seg);
  }
  return out.join(path.sep) || path.sep;
}

/** What to do when there is no model to tune yet (the reward stage says the same). */
export const NO_BASE_TO_TUNE = 'There is no base model to fine-tune: train one first (/train pretrain) or pass base=<model folder>';

export async function runSftJob(params: SftJobParams, ctx: SftJobContext): Promise<SftJobResult> {
  const p = SftJobParamsSchema.parse(params);
  const log = ctx.log ?? (() => {});
  const { home, runDir } = ctx;
  await fs.mkdir(runDir, { recursive: true });
  const base = await resolveBase(home, p.base, NO_BASE_TO_TUNE);
  const homeCorpus = path.join(home, 'corpus');
  // No documents named: learn the ones in the knowledge base, retrieving from its passages (BM25; the job runs without Chroma).
  const homeKb = !p.docs && ctx.knowledgeBases.exists(p.kb) ? ctx.knowledgeBases.open(p.kb) : undefined;
  if (homeKb && homeKb.chunkCount === 0) homeKb.close();
  const fromKb = homeKb !== undefined && homeKb.chunkCount > 0;
  if (p.kb && !fromKb && !p.docs) throw new Error(`the knowledge base "${p.kb}" has no documents (add some with /kb add --kb ${p.kb}, or pass docs=)`);
  const docs = fromKb ? [] : (p.docs ?? (existsSync(homeCorpus) ? [homeCorpus] : [path.join(SAMPLE_HANDBOOK, 'en'), path.join(SAMPLE_HANDBOOK, 'zh')]));
  const docsBase = fromKb ? '' : commonParent(docs);
  const questionsFile =
    p.questions === 'none'
      ? undefined
      : p.questions ??
    (existsSync(path.join(home, 'eval', 'questions.jsonl'))
      ? path.join(home, 'eval', 'questions.jsonl')
      : !fromKb && docs.every((d) => path.resolve(d).startsWith(SAMPLE_HANDBOOK))
        ? path.join(SAMPLE_HANDBOOK, 'questions.jsonl')
        : undefined);

  // Retrieval over the documents, as the bot does it (BM25; hybrid once an encoder is trained).
  const kb = fromKb ? homeKb! : ctx.knowledgeBases.scratch(path.join(runDir, 'kb.sqlite'));
  try {
    let documents: SourceDocument[];
    if (fromKb) {
      documents = documentsFromPassages(kb.passages());
      log(`learning the ${documents.length} documents of the knowledge base${p.kb ? ` "${p.kb}"` : ''} (${kb.chunkCount} passages)`);
    } else {
      const added = await kb.addPaths(docs, { baseDir: docsBase });
      if (added.failed.length) log(`knowledge base: ${added.failed.length} files could not be read (${added.failed.map((f) => f.source).join(', ')})`);
      documents = await readDocuments(docs, docsBase);
    }
    const questionSet = questionsFile ? await readGateQuestions(questionsFile) : { questions: [], unanswerable: 0 };
    const questions = questionSet.questions;
    // A file without the evaluation split is all held out.
    const evalSplit = questions.some((q) => q.split === p.evalSplit) ? p.evalSplit : undefined;
    let heldOut: QaQuestion[] = questions.filter((q) => evalSplit === undefined || q.split === evalSplit);
    if (questionSet.unanswerable) log(`${questionSet.unanswerable} unanswerable questions of ${path.basename(questionsFile!)} left out of the QA evaluation`);

    // Generated examples; without a question set, whole sections of them are held out for the gate.
    const generate = p.generate ?? true;
    let generated = generate ? generateQa(documents, { ...(p.generateMax !== undefined ? { max: p.generateMax } : {}), seed: p.seed ?? 7 }) : [];
    if (generate) log(`generated ${generated.length} question/answer examples from ${documents.length} documents`);
    const passageOf = (q: { evidence: { source: string; title: string } }) => `${q.evidence.source}#${q.evidence.title}`;
    let heldOutPassages: string[] = [];
    if (heldOut.length === 0 && p.holdOut > 0 && generated.length > 0) {
      const split = holdOutBySection(generated, { fraction: p.holdOut, maxQuestions: p.holdOutMax, seed: p.seed ?? 7 });
      generated = split.train;
      heldOut = split.heldOut.map((q, i) => ({ id: `held-out-${i + 1}`, question: q.question, answer: q.answer, source: q.evidence.source, lang: q.lang, split: 'held-out' }));
      heldOutPassages = split.heldOut.map((q) => passageOf(q));
      const sections = new Set(heldOutPassages);
      if (heldOut.length) log(`${heldOut.length} generated questions of ${sections.size} held-out passages kept for the evaluation (none of their passages is trained on)`);
    }

    // A resumed job continues from its checkpoint with the examples it encoded then.
    const resumed = (await latestCheckpoint(runDir)) !== undefined && existsSync(path.join(runDir, 'data', 'train.json'));
    const examples: SftExample[] = [];
    if (!resumed) {
      examples.push(...(await withRetrievedContext(generated, kb, { k: p.k, seed: p.seed ?? 11 })));
      if (p.trainOnQuestions && evalSplit !== undefined) {
        let used = 0;
        for (const q of questions.filter((x) => x.split !== evalSplit)) {
          const passages = (await kb.search(q.question, p.k)).map((s) => ({ source: s.source, title: s.title, text: s.text }));
          // Only examples answerable from their context: the model should learn to read, not to guess.
          if (!containsGold(formatContext(passages), q.answer)) continue;
          examples.push({ messages: [{ role: 'user', content: q.question }, { role: 'assistant', content: q.answer }], context: passages, format: 'qa', ...(q.id ? { id: q.id } : {}) });
          used += 1;
        }
        if (questions.length) log(`${used} questions of ${path.basename(questionsFile!)} (not "${evalSplit}") used as training examples`);
      }
      // What this run learns from and is judged on, for whoever wants to look (and the tests).
      await fs.mkdir(path.join(runDir, 'data'), { recursive: true });
      await fs.writeFile(
        path.join(runDir, 'data', 'examples.jsonl'),
        examples
          .map((e, i) =>
            JSON.stringify({
              id: e.id,
              format: e.format,
              question: e.messages.find((m) => m.role === 'user')?.content,
              answer: e.messages.find((m) => m.role === 'assistant')?.content,
              // A generated example's own passage (the first examples are the generated ones, in order).
              ...(i < generated.length ? { passage: passageOf(generated[i]!) } : {}),
              sources: (e.context ?? []).map((c) => c.source),
            }),
          )
          .join('\n') + (examples.length ? '\n' : ''),
      );
      await fs.writeFile(
        path.join(runDir, 'data', 'held-out.jsonl'),
        heldOut.map((q, i) => JSON.stringify({ ...q, ...(heldOutPassages[i] ? { passage: heldOutPassages[i] } : {}) })).join('\n') + (heldOut.length ? '\n' : ''),
      );
    }

    // An imported chat model is asked through its own template (evaluateChatQa); its adapter is a PEFT folder registered over it.
    const chat = existsSync(path.join(base.dir, CHAT_MANIFEST)) ? loadChatModelVersion(base.dir) : undefined;
    if (chat && !base.version) throw new Error('an imported chat model is fine-tuned by its version (base=vN)');
    const model = chat ? undefined : await LoadedModel.load(base.dir, base.version);
    const evaluate = async (label: string, m: LoadedModel | LlamaModel): Promise<QaScores> => {
      const onQuestion = (done: number, total: number) => ctx.progress?.({ stage: 'evaluate', phase: 'eval', step: done, totalSteps: total, epoch: 0, loss: NaN, lr: 0, tokensPerSec: 0, etaSec: 0, msPerIter: 0 });
      const common = { kb, questions: heldOut, k: p.k, maxTokens: p.answerTokens, onQuestion, ...(ctx.signal ? { signal: ctx.signal } : {}) };
      const scores =
        m instanceof LoadedModel
          ? await evaluateQa({
              ...common,
              model: m,
              ...(p.maxContextTokens ? { maxContextTokens: p.maxContextTokens } : {}),
              ...(p.systemPrompt ? { systemPrompt: p.systemPrompt } : {}),
              decoding: p.decoding,
            })
          : await evaluateChatQa({ ...common, model: m, tokenizer: chat!.tokenizer, name: label });
      log(`QA ${label}: EM ${(100 * scores.exactMatch).toFixed(1)}%, F1 ${(100 * scores.f1).toFixed(1)}%, contains gold ${(100 * scores.containsGold).toFixed(1)}% (n=${scores.n})`);
      return scores;
    };
    const doEval = !p.skipEval && heldOut.length > 0;
    let before: QaScores | undefined;
    const beforeFile = path.join(runDir, 'qa-before.json');
    if (doEval) {
      const cached = existsSync(beforeFile) ? (JSON.parse(await fs.readFile(beforeFile, 'utf8')) as QaScores) : undefined;
      // Scores of another decoding (older files: free) are measured again.
      before = cached && (cached.decoding ?? 'free') === p.decoding ? cached : await evaluate('before (base)', model ?? chat!.model);
      // Scores cut short by a stop are not kept: a resumed job measures the base again.
      if (!ctx.signal?.aborted) await writeJsonAtomic(beforeFile, before);
    }

    const lora = {
      ...(p.rank !== undefined ? { rank: p.rank } : {}),
      ...(p.alpha !== undefined ? { alpha: p.alpha } : {}),
      ...(p.dropout !== undefined ? { dropout: p.dropout } : {}),
      ...(p.targets !== undefined ? { targets: p.targets } : {}),
    };
    const optional = Object.fromEntries(
      (['epochs', 'maxIters', 'batchSize', 'gradAccumSteps', 'learningRate', 'warmupIters', 'evalInterval', 'checkpointInterval', 'maxContextTokens', 'systemPrompt', 'seed', 'backend'] as const)
        .filter((k) => p[k] !== undefined)
        .map((k) => [k, p[k]]),
    );
    const training = await sft(
      {
        runDir,
        base: base.dir,
        ...(base.version ? { baseVersion: base.version } : {}),
        ...(p.data ? { data: p.data } : {}),
        ...(Object.keys(lora).length ? { lora } : {}),
        ...optional,
        examples,
        // The gate's engine: the trainable model shares its matrices (the model is held once).
        ...(chat ? { chatModel: chat } : {}),
        adapterMeta: { retrievalK: p.k, answerTokens: p.answerTokens, decoding: p.decoding },
        resume: true,
      },
      {
        ...(ctx.signal ? { signal: ctx.signal } : {}),
        log,
        onProgress: (ev) => ctx.progress?.({ ...ev, stage: ev.phase === 'eval' ? 'evaluate' : 'sft' }),
      },
    );
    const pct = (v: number) => `${(100 * v).toFixed(2)}%`;
    const trainedLine = `LoRA r=${training.lora.rank} alpha=${training.lora.alpha} on ${training.lora.targets.join(',')}: ${training.trainableParameters.toLocaleString('en-US')} trainable parameters (${pct(training.trainableShare)} of ${training.totalParameters.toLocaleString('en-US')}), ${training.step} steps = ${training.epochs.toFixed(2)} epochs, ${(training.msPerEpoch / 1000).toFixed(1)} s per epoch, val loss ${training.baseValLoss.toFixed(3)} → ${training.valLoss.toFixed(3)}`;
    if (training.status === 'aborted') {
      model?.dispose();
      return { status: 'aborted', summary: `SFT stopped at step ${training.step}; /train resume continues it.`, training, promoted: false, report: trainedLine, ...(base.version ? { baseVersion: base.version } : {}) };
    }

    let after: QaScores | undefined;
    let comparison: QaComparison | undefined;
    if (doEval && before && chat) {
      after = await evaluate('after (LoRA)', mergeLoraIntoChatModel(chat.model, readPeftAdapter(training.adapterDir)));
      await writeJsonAtomic(path.join(runDir, 'qa-after.json'), after);
      comparison = compareQa(before, after);
    } else if (doEval && before && model) {
      const set = new AdapterSet(model);
      await set.load('candidate', training.adapterDir);
      after = await evaluate('after (LoRA)', set.model('candidate'));
      await writeJsonAtomic(path.join(runDir, 'qa-after.json'), after);
      comparison = compareQa(before, after);
      set.dispose();
    } else model?.dispose();

    const registry = new ModelRegistry(home);
    let modelVersion: string | undefined;
    let promoted = false;
    let adapterName: string | undefined;
    const beats = comparison?.improved ?? !doEval;
    if (beats && chat) {
      const metrics: Record<string, number> = { sftValLoss: training.valLoss, trainableShare: training.trainableShare };
      if (after && before) Object.assign(metrics, { qaExactMatch: after.exactMatch, qaF1: after.f1, qaContainsGold: after.containsGold, baseQaF1: before.f1 });
      // Served as the base with the adapter merged (model/import/chat-manifest.ts); PEFT's folder as it is.
      const registered = await registry.registerChatAdapter(training.adapterDir, base.version!, { source: 'sft', metrics, onAdapter: 'combine', ...(p.name ? { name: p.name } : {}) });
      modelVersion = registered.version;
      const serving = (await registry.serving())?.version;
      if (doEval && p.promote === 'auto' && (serving === undefined || serving === base.version)) {
        await registry.promote(registered.version);
        promoted = true;
      }
    } else if (beats && training.modelDir) {
      const metrics: Record<string, number> = { sftValLoss: training.valLoss, trainableShare: training.trainableShare };
      if (after && before) Object.assign(metrics, { qaExactMatch: after.exactMatch, qaF1: after.f1, qaContainsGold: after.containsGold, baseQaF1: before.f1 });
      const registered = await registry.register(training.modelDir, {
        source: 'sft',
        metrics,
        ...(base.version ? { parent: base.version } : {}),
        notes: `LoRA adapter ${training.adapterDir}`,
      });
      modelVersion = registered.version;
      // Kept with the version: promoted, it is served as its base + this adapter (src/model/lora/served-models.ts).
      await attachAdapterToVersion(registry, registered.version, training.adapterDir);
      adapterName = p.name ?? `${base.version ?? 'base'}-sft-${path.basename(runDir)}`.replace(/[^\w.-]/g, '-');
      await new AdapterStore(home).import(adapterName, training.adapterDir);
      const serving = (await registry.serving())?.version;
      if (doEval && p.promote === 'auto' && (serving === undefined || serving === base.version)) {
        await registry.promote(registered.version);
        promoted = true;
      }
    }
    const rows = [
      ...(before ? [{ label: `base ${base.version ?? ''}`.trim(), scores: before }] : []),
      ...(after ? [{ label: 'base + LoRA', scores: after }] : []),
    ];
    const report = [trainedLine, rows.length ? `Held-out QA, ${p.decoding} decoding (as the bot answers with this model):\n${formatQaScores(rows)}` : 'QA not evaluated (no held-out questions).', comparison?.verdict ?? ''].filter(Boolean).join('\n');
    await fs.writeFile(path.join(runDir, 'report.txt'), `${report}\n`);
    const summary = comparison
      ? comparison.improved
        ? `${comparison.verdict} Registered ${modelVersion}${promoted ? ' and promoted it' : `; promote it with /model promote ${modelVersion}`}.${adapterName ? ` Adapter "${adapterName}".` : ''}`
        : comparison.verdict
      : `SFT done (no held-out questions to compare on): registered ${modelVersion}${adapterName ? ` and adapter "${adapterName}"` : ''}, not promoted.`;
    return {
      status: 'completed',
      summary: `${summary}\n${trainedLine}`,
      training,
      ...(base.version ? { baseVersion: base.version } : {}),
      ...(before ? { before } : {}),
      ...(after ? { after } : {}),
      ...(comparison ? { comparison } : {}),
      ...(modelVersion ? { modelVersion } : {}),
      promoted,
      ...(adapterName ? { adapterName } : {}),
      report,
    };
  } finally {
    kb.close();
  }
}
