/**
 * llama.cpp as the reference for chat models (node-llama-cpp 3.21.1, its prebuilt CPU binary):
 * next-token log-probabilities at every prompt position, the greedy continuation and its
 * tokenizer's ids, for the parity and export tests. llama.cpp runs with an F32 KV cache and flash
 * attention off (its default F16 cache is an error of its own).
 */
import { getLlama, type Llama } from 'node-llama-cpp';
import { argmax } from '../../../src/model/import/llama.ts';

export function startLlamaCpp(): Promise<Llama> {
  return getLlama({ gpu: false, build: 'never', logLevel: 'error' as never, progressLogs: false } as never);
}

/** A deterministic prompt of ordinary (non-special) ids. */
export function promptIds(vocab: number, seed: number, length = 64): number[] {
  let a = seed;
  return Array.from({ length }, () => {
    a = (Math.imul(a, 1103515245) + 12345) >>> 0;
    return (a >>> 8) % (vocab - 8);
  });
}

function centred(row: ArrayLike<number>): Float64Array {
  let mean = 0;
  for (let i = 0; i < row.length; i++) mean += row[i]!;
  mean /= row.length;
  return Float64Array.from({ length: row.length }, (_, i) => row[i]! - mean);
}

/**
 * llama.cpp's log-probabilities are its logits up to one constant per position, so both sides are
 * compared centred (minus their mean over the vocabulary). Over all positions: the largest
 * |ours − theirs|, and the largest ‖ours − theirs‖ / ‖theirs‖ of one position.
 */
export function compareLogits(ours: Float32Array, theirs: Float64Array[], vocab: number): { maxAbs: number; maxRel: number } {
  let maxAbs = 0;
  let maxRel = 0;
  for (let t = 0; t < theirs.length; t++) {
    const a = centred(ours.subarray(t * vocab, (t + 1) * vocab));
    const b = centred(theirs[t]!);
    let d2 = 0;
    let n2 = 0;
    for (let i = 0; i < vocab; i++) {
      maxAbs = Math.max(maxAbs, Math.abs(a[i]! - b[i]!));
      d2 += (a[i]! - b[i]!) ** 2;
      n2 += b[i]! ** 2;
    }
    maxRel = Math.max(maxRel, Math.sqrt(d2 / n2));
  }
  return { maxAbs, maxRel };
}

/** llama.cpp's log-probabilities at every prompt position, its greedy continuation, and its tokenizer's ids for some texts. */
export async function llamaCppRun(
  llama: Llama,
  file: string,
  ids: number[],
  vocab: number,
  texts: string[],
  greedyTokens: number,
): Promise<{ logits: Float64Array[]; greedy: number[]; tokenized: number[][] }> {
  const model = await llama.loadModel({ modelPath: file, defaultContextFlashAttention: false });
  const ctx = await model.createContext({ contextSize: 128, batchSize: 128, threads: 1, flashAttention: false, experimentalKvCacheKeyType: 'F32', experimentalKvCacheValueType: 'F32' } as never);
  const seq = ctx.getSequence();
  const out = await seq.controlledEvaluate(ids.map((id) => [id, { generateNext: { probabilities: true } }] as never));
  const logits = out.map((o) => {
    const row = new Float64Array(vocab).fill(Math.log(1e-45));
    for (const [token, p] of o!.next.probabilities!) row[Number(token)] = Math.log(p);
    return row;
  });
  const greedy: number[] = [argmax(Float32Array.from(logits[logits.length - 1]!))];
  while (greedy.length < greedyTokens) {
    const [step] = await seq.controlledEvaluate([[greedy[greedy.length - 1]!, { generateNext: { token: true, options: { temperature: 0 } } }] as never]);
    greedy.push(Number(step!.next.token));
  }
  const tokenized = texts.map((t) => [...model.tokenize(t)].map(Number));
  await ctx.dispose();
  await model.dispose();
  return { logits, greedy, tokenized };
}
