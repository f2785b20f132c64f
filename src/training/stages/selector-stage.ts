import { join } from 'node:path';
import { z } from 'zod';
import { LoadedModel } from '../../model/loaded-model.ts';
import { writeJsonAtomic } from '../../model/files.ts';
import { ModelRegistry } from '../../model/registry.ts';
import { answerSettings } from '../../model/answer-settings.ts';
import { ModelCandidateScorer, SELECTOR_FILE } from '../../rag/model-candidate-scorer.ts';
import { DEFAULT_SELECTOR, selectorAccuracy, trainSelector, type SelectorGroup, type SelectorWeights } from '../../rag/answer-selector.ts';
import { LocalEmbeddings } from '../../rag/local-embeddings.ts';
import { isHeldOutQuestion, questionKey, votedAnswers } from '../feedback-datasets.ts';
import type { RunStage, StageResult } from '../jobs/stage.ts';
import { documentsFromPassages, generateQa } from '../sft/qa-generator.ts';
import { selectorGroups, voteGroups } from '../sft/selector-data.ts';
import { int, num, parseStageParams } from './stage-params.ts';

/** Least rated answers the selector learns from: fewer and the held-out check says nothing. */
export const MIN_SELECTOR_VOTES = 20;

/**
 * `/train selector [base=v3] [questions=300] [heldOut=0.2] [voteWeight=2] [minVotes=20]`: the
 * serving model's answer selector (src/rag/answer-selector.ts) learns from the 👍/👎 on the bot's
 * answers — a liked answer's candidate is the right one, a disliked one is ranked lower — together
 * with questions generated from the knowledge base, whose right answers are known (so a handful of
 * votes cannot undo what the documents teach).
 *
 * The gate, on questions held out by question: the new selector must choose better than the
 * current one on the held-out rated answers (liked kept, disliked avoided) and no worse on the
 * held-out generated questions. The result is registered as a new model version — the same
 * weights with the new `answer-selector.json` — so the job runner promotes it by the usual rule
 * and `/model rollback` undoes it.
 *
 * Retrieval for the generated questions is BM25 (the job runs without Chroma); every candidate's
 * features, the encoder's cosine and the model's score included, are computed as when serving.
 */
export const runStage: RunStage = async (ctx) => {
  const { params, home, signal, progress, log } = ctx;
  const p = parseStageParams('selector', params, {
    base: z.string().regex(/^v\d+$/, 'a model version (v3)').optional(),
    questions: int().optional(),
    heldOut: num().refine((v) => v > 0 && v < 1, 'must be between 0 and 1').optional(),
    voteWeight: num().optional(),
    minVotes: int().optional(),
    seed: int().optional(),
  });
  const heldOut = p.heldOut ?? 0.2;
  const seed = p.seed ?? 0;
  const registry = new ModelRegistry(home);
  const version = p.base ?? (await registry.serving())?.version;
  if (!version) throw new Error('selector: no model is serving: the selector chooses among answers for a model (train or import one first)');
  if (!(await registry.get(version))) throw new Error(`selector: no model version ${version}`);
  const store = ctx.store.open();
  if (!store) throw new Error(`selector: no feedback recorded yet (no ${ctx.store.location}); users rate answers with 👍/👎 first`);
  const rated = await votedAnswers(store).finally(() => store.close());
  const minVotes = p.minVotes ?? MIN_SELECTOR_VOTES;
  if (rated.length < minVotes) throw new Error(`selector: too little feedback: ${rated.length} answers with a net vote; it needs ${minVotes} (👍/👎 on the bot's answers)`);

  const kb = ctx.knowledgeBases.open();
  const model = await LoadedModel.load(registry.dir(version), version);
  try {
    const scorer = new ModelCandidateScorer(model, answerSettings(model));
    const embeddings = LocalEmbeddings.load(join(home, 'embeddings'));
    // Features as when serving (idf weights, the encoder's cosine); retrieval by BM25 alone.
    const candidateKb = { retrieve: kb.retrieve.bind(kb), termWeight: kb.termWeight, ...(embeddings ? { embeddings } : {}) };
    const current: SelectorWeights = scorer.selector ?? DEFAULT_SELECTOR;

    const votes = await voteGroups(rated, { kb: candidateKb, scorer, signal, onProgress: (step, totalSteps) => progress({ stage: 'votes', step, totalSteps }) });
    const sk = votes.skipped;
    const have = `${rated.length} answers with a net vote, ${votes.groups.length} of them answers chosen among candidates (skipped: ${sk.refused} "don't know", ${sk.notCandidates} written by another answerer)`;
    if (votes.groups.length < minVotes)
      throw new Error(`selector: too little feedback: ${have}. It needs ${minVotes} rated answers that the bot chose among candidates (TEAMLLM_ANSWER_DECODING=candidates).`);
    log(`feedback: ${have}`);

    const documents = documentsFromPassages(kb.passages());
    const generated = generateQa(documents, { max: p.questions ?? 300, seed: seed + 11 });
    const known = await selectorGroups(generated, { kb: candidateKb, scorer, signal, onProgress: (step, totalSteps) => progress({ stage: 'generated questions', step, totalSteps }) });
    const held = (q: string) => isHeldOutQuestion(questionKey(q), heldOut, seed);
    const voteWeight = p.voteWeight ?? 2;
    const trainVotes: SelectorGroup[] = votes.groups.filter((g) => !held(g.question)).map((g) => ({ ...g, weight: voteWeight }));
    const heldVotes = votes.groups.filter((g) => held(g.question));
    const cut = Math.floor(known.length * (1 - heldOut));
    const trainKnown = known.slice(0, cut);
    const heldKnown = known.slice(cut);
    if (heldVotes.length === 0) throw new Error(`selector: none of the ${votes.groups.length} rated answers fell in the held-out questions; collect votes on more distinct questions, or raise heldOut`);
    log(`training on ${trainVotes.length} rated answers (weight ${voteWeight}) and ${trainKnown.length} generated questions; holding out ${heldVotes.length} and ${heldKnown.length}`);

    const trained = trainSelector([...trainKnown, ...trainVotes], { start: current });
    const before = { votes: selectorAccuracy(current, heldVotes), known: selectorAccuracy(current, heldKnown) };
    const after = { votes: selectorAccuracy(trained, heldVotes), known: selectorAccuracy(trained, heldKnown) };
    const pct = (v: number) => `${(100 * v).toFixed(1)}%`;
    const reasons: string[] = [];
    const votesUp = after.votes > before.votes;
    const knownKept = after.known >= before.known;
    reasons.push(`held-out rated answers chosen as people wanted: ${pct(before.votes)} → ${pct(after.votes)} (${heldVotes.length})${votesUp ? '' : ': not better'}`);
    reasons.push(`held-out generated questions answered right: ${pct(before.known)} → ${pct(after.known)} (${heldKnown.length})${knownKept ? '' : ': worse'}`);
    const gate = { passed: votesUp && knownKept, reasons };
    const metrics: Record<string, number> = {
      votes: votes.groups.length,
      heldOutVotes: heldVotes.length,
      voteAccuracy: after.votes,
      baseVoteAccuracy: before.votes,
      generatedAccuracy: after.known,
      baseGeneratedAccuracy: before.known,
      modelWeight: trained.weights.model,
    };
    const result: StageResult = {
      summary: gate.passed
        ? `The answer selector learnt from ${votes.groups.length} rated answers: held-out answers chosen as people wanted ${pct(before.votes)} → ${pct(after.votes)}.`
        : `The answer selector did not improve on held-out answers (${pct(before.votes)} → ${pct(after.votes)} as people wanted; generated ${pct(before.known)} → ${pct(after.known)}); nothing registered.`,
      metrics,
      gate,
    };
    if (!gate.passed) return result;

    const selector: SelectorWeights = {
      ...trained,
      trained: { questions: trainKnown.length + trainVotes.length, heldOut: heldKnown.length + heldVotes.length, heldOutAccuracy: after.known, defaultHeldOutAccuracy: before.known, votes: votes.groups.length },
    };
    // Same weights, new selector: a version of its own, so promotion and rollback work as for any model.
    const registered = await registry.register(registry.dir(version), {
      source: 'selector',
      parent: version,
      metrics,
      notes: `${version}'s weights with an answer selector trained on ${votes.groups.length} rated answers`,
    });
    await writeJsonAtomic(join(registry.dir(registered.version), SELECTOR_FILE), selector);
    await registry.recordFiles(registered.version, [SELECTOR_FILE]);
    await registry.annotate(registered.version, { gate });
    log(`registered ${registered.version}: ${version}'s weights with the new answer selector`);
    return { ...result, modelVersion: registered.version };
  } finally {
    model.dispose();
    kb.close();
  }
};
