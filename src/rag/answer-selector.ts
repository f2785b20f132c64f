/**
 * The learned part of choosing an answer: a linear scorer over each candidate's features
 * (answer-candidates.ts: the rule prior and its parts, the candidate's kind, and `model`, the
 * language model's log-probability of the candidate relative to the best one in the set), trained
 * listwise — a softmax over one question's candidates, the right ones as the target — the way
 * learning-to-rank trains ListNet. Written by hand because it is twenty lines of arithmetic over a
 * dozen numbers; no library would make it shorter.
 *
 * Trained on questions generated from the company's own documents (their right answers are known),
 * and, once people vote, on the answers they rated (training/sft/selector-data.ts). Untrained, the
 * weights are the rule prior alone (DEFAULT_SELECTOR): measured, an untrained weight on the
 * quickstart model's score made answers worse (docs/fine-tuning.md).
 */
import { CANDIDATE_FEATURES, type CandidateFeature, type CandidateFeatures } from './answer-candidates.ts';

export interface SelectorWeights {
  format: 'teamllm-answer-selector/1';
  weights: Record<CandidateFeature, number>;
  /** What it was trained on and how it did (held-out questions), for the model card. */
  trained?: { questions: number; heldOut: number; heldOutAccuracy: number; defaultHeldOutAccuracy: number; votes?: number };
}

export const DEFAULT_SELECTOR: SelectorWeights = {
  format: 'teamllm-answer-selector/1',
  weights: { prior: 1, lexical: 0, cosine: 0, fit: 0, near: 0, value: 0, clause: 0, unit: 0, long: 0, passage: 0, model: 0 },
};

export function selectorScore(selector: SelectorWeights, f: CandidateFeatures): number {
  let s = 0;
  for (const name of CANDIDATE_FEATURES) s += (selector.weights[name] ?? 0) * f[name];
  return s;
}

/** One question's candidates and which of them are right. */
export interface SelectorGroup {
  features: CandidateFeatures[];
  right: boolean[];
  /**
   * A candidate people rejected (a 👎 on the answer it made), when which one is right is unknown:
   * the selector learns to rank it lower, not which other to prefer.
   */
  rejected?: number;
  /** How much this question counts (a vote by a person may count more than a generated question). */
  weight?: number;
}

export interface TrainSelectorOptions {
  epochs?: number;
  learningRate?: number;
  /** L2 pull towards the starting weights: little data must not undo the prior. */
  l2?: number;
  start?: SelectorWeights;
}

/** Share of groups whose best-scored candidate is a right one. */
export function selectorAccuracy(selector: SelectorWeights, groups: SelectorGroup[]): number {
  if (groups.length === 0) return 0;
  let hit = 0;
  for (const g of groups) {
    let best = 0;
    const scores = g.features.map((f) => selectorScore(selector, f));
    for (let i = 1; i < scores.length; i++) if (scores[i]! > scores[best]!) best = i;
    if (g.rejected !== undefined ? best !== g.rejected : g.right[best]) hit++;
  }
  return hit / groups.length;
}

/** Groups that teach something: a rejected candidate among others, or right and wrong ones together. */
function usefulGroups(groups: SelectorGroup[]): SelectorGroup[] {
  return groups.filter((g) => (g.rejected !== undefined ? g.features.length > 1 : g.right.some(Boolean) && !g.right.every(Boolean)));
}

/**
 * The listwise loss (mean over the useful groups, weighted) and its gradient by the weights, in
 * CANDIDATE_FEATURES order: for a group with right candidates, −log of the softmax mass on them;
 * for a group with a rejected candidate, −log(1 − its mass).
 */
export function selectorLossAndGradient(w: number[], groups: SelectorGroup[]): { loss: number; grad: number[] } {
  const names = CANDIDATE_FEATURES;
  const useful = usefulGroups(groups);
  const total = useful.reduce((n, g) => n + (g.weight ?? 1), 0) || 1;
  const grad = new Array<number>(names.length).fill(0);
  let loss = 0;
  for (const g of useful) {
    const x = g.features.map((f) => names.map((n) => f[n]));
    const s = x.map((row) => row.reduce((a, v, j) => a + v * w[j]!, 0));
    const max = Math.max(...s);
    const e = s.map((v) => Math.exp(v - max));
    const z = e.reduce((a, b) => a + b, 0);
    const p = e.map((v) => v / z);
    const scale = (g.weight ?? 1) / total;
    const c = g.rejected;
    let d: (i: number) => number;
    if (c !== undefined) {
      const rest = Math.max(1e-12, 1 - p[c]!);
      loss -= scale * Math.log(rest);
      // d(−log(1 − p_c))/ds_i = p_c · ([i = c] − p_i) / (1 − p_c)
      d = (i) => (p[c]! * ((i === c ? 1 : 0) - p[i]!)) / rest;
    } else {
      const zr = g.right.reduce((a, r, i) => a + (r ? e[i]! : 0), 0);
      loss -= scale * Math.log(zr / z);
      // d(−log Σ_right p)/ds_i = p_i − [right_i] · e_i / Σ_right e
      d = (i) => p[i]! - (g.right[i] ? e[i]! / zr : 0);
    }
    x.forEach((row, i) => {
      const di = d(i);
      row.forEach((v, j) => (grad[j]! += scale * di * v));
    });
  }
  return { loss, grad };
}

/** Full-batch gradient descent on selectorLossAndGradient, pulled towards the starting weights (L2). */
export function trainSelector(groups: SelectorGroup[], options: TrainSelectorOptions = {}): SelectorWeights {
  const start = options.start ?? DEFAULT_SELECTOR;
  const names = CANDIDATE_FEATURES;
  const w0 = names.map((n) => start.weights[n] ?? 0);
  const w = [...w0];
  const useful = usefulGroups(groups);
  const epochs = options.epochs ?? 300;
  const lr = options.learningRate ?? 0.5;
  const l2 = options.l2 ?? 0.01;
  for (let epoch = 0; epoch < epochs; epoch++) {
    const { grad } = selectorLossAndGradient(w, useful);
    for (let j = 0; j < names.length; j++) w[j]! -= lr * (grad[j]! + l2 * (w[j]! - w0[j]!));
  }
  return { format: 'teamllm-answer-selector/1', weights: Object.fromEntries(names.map((n, j) => [n, w[j]!])) as Record<CandidateFeature, number> };
}

export function parseSelector(json: unknown): SelectorWeights | undefined {
  const o = json as Partial<SelectorWeights> | undefined;
  if (!o || o.format !== 'teamllm-answer-selector/1' || typeof o.weights !== 'object' || o.weights === null) return undefined;
  const weights = { ...DEFAULT_SELECTOR.weights };
  for (const n of CANDIDATE_FEATURES) {
    const v = (o.weights as Record<string, unknown>)[n];
    if (typeof v === 'number' && Number.isFinite(v)) weights[n] = v;
  }
  return { format: 'teamllm-answer-selector/1', weights, ...(o.trained ? { trained: o.trained } : {}) };
}
