/**
 * Choosing the next token from logits: repetition penalty, temperature, top-k, top-p (nucleus),
 * greedy when temperature is 0. Works on a plain Float32Array read back from the backend.
 */
import { Random } from './random.ts';

export interface SamplingOptions {
  /** 0 = greedy (argmax). Default 0.8. */
  temperature?: number;
  /** Keep only the k most likely tokens (0 or undefined: all). */
  topK?: number;
  /** Keep the smallest set of tokens whose probability reaches p (1 or undefined: all). */
  topP?: number;
  /** > 1 discourages tokens already present (CTRL's penalty: divide positive logits, multiply negative). */
  repetitionPenalty?: number;
}

export function applyRepetitionPenalty(logits: Float32Array, history: Iterable<number>, penalty: number): void {
  if (!penalty || penalty === 1) return;
  const seen = new Set<number>();
  for (const id of history) {
    if (seen.has(id) || id < 0 || id >= logits.length) continue;
    seen.add(id);
    const l = logits[id]!;
    logits[id] = l > 0 ? l / penalty : l * penalty;
  }
}

export function argmax(values: ArrayLike<number>): number {
  let best = 0;
  let bestV = -Infinity;
  for (let i = 0; i < values.length; i++) {
    if (values[i]! > bestV) {
      bestV = values[i]!;
      best = i;
    }
  }
  return best;
}

/**
 * Picks the next token. `logits` is modified in place. `history` feeds the repetition penalty;
 * `banned` ids (e.g. special tokens that must not appear) get probability 0.
 */
export function sampleToken(
  logits: Float32Array,
  options: SamplingOptions,
  rng: Random,
  history: Iterable<number> = [],
  banned: Iterable<number> = [],
): number {
  applyRepetitionPenalty(logits, history, options.repetitionPenalty ?? 1);
  for (const id of banned) if (id >= 0 && id < logits.length) logits[id] = -Infinity;
  const temperature = options.temperature ?? 0.8;
  if (temperature <= 0) return argmax(logits);

  const V = logits.length;
  let max = -Infinity;
  for (let i = 0; i < V; i++) if (logits[i]! > max) max = logits[i]!;
  // Candidates: drop tokens so unlikely (e^-30 relative) they cannot matter, which keeps sorting cheap.
  const cutoff = max - 30 * temperature;
  let ids: number[] = [];
  for (let i = 0; i < V; i++) if (logits[i]! >= cutoff) ids.push(i);
  ids.sort((a, b) => logits[b]! - logits[a]! || a - b);
  const k = options.topK ?? 0;
  if (k > 0 && ids.length > k) ids = ids.slice(0, k);
  const probs = ids.map((i) => Math.exp((logits[i]! - max) / temperature));
  let total = probs.reduce((a, b) => a + b, 0);
  const p = options.topP ?? 1;
  if (p > 0 && p < 1) {
    let acc = 0;
    let keep = ids.length;
    for (let j = 0; j < ids.length; j++) {
      acc += probs[j]! / total;
      if (acc >= p) {
        keep = j + 1;
        break;
      }
    }
    ids = ids.slice(0, keep);
    probs.length = keep;
    total = probs.reduce((a, b) => a + b, 0);
  }
  let r = rng.uniform() * total;
  for (let j = 0; j < ids.length; j++) {
    r -= probs[j]!;
    if (r <= 0) return ids[j]!;
  }
  return ids[ids.length - 1]!;
}
