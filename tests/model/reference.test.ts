/**
 * The GPT against an independent, plain-JavaScript (float64) implementation of nanoGPT's forward
 * pass, written from model.py: catches semantic slips (head split, mask, norm axis, tying) that a
 * gradient check cannot see.
 */
import { describe, expect, it } from 'vitest';
import { tf, useBackend, tinyModel, randomIds } from './helpers.ts';
import type { GPT } from '../../src/model/gpt.ts';

type Mat = number[][];
const matmul = (a: Mat, w: number[], nIn: number, nOut: number, b?: number[]): Mat =>
  a.map((row) => Array.from({ length: nOut }, (_, o) => row.reduce((s, v, i) => s + v * w[i * nOut + o]!, b ? b[o]! : 0)));
const layerNorm = (a: Mat, w: number[], b?: number[]): Mat =>
  a.map((row) => {
    const mean = row.reduce((s, v) => s + v, 0) / row.length;
    const variance = row.reduce((s, v) => s + (v - mean) ** 2, 0) / row.length;
    return row.map((v, i) => ((v - mean) / Math.sqrt(variance + 1e-5)) * w[i]! + (b ? b[i]! : 0));
  });
function erf(x: number): number {
  // Series/continued fraction via high-precision numeric integration is overkill: use a 1e-12 series.
  let sum = x;
  let term = x;
  for (let n = 1; n < 200; n++) {
    term *= (-x * x) / n;
    sum += term / (2 * n + 1);
    if (Math.abs(term) < 1e-17) break;
  }
  return (2 / Math.sqrt(Math.PI)) * sum;
}
const gelu = (v: number) => 0.5 * v * (1 + erf(v / Math.SQRT2));

function referenceLogits(model: GPT, ids: number[]): Mat {
  const { nLayer, nHead, nEmbd: C, vocabSize: V } = model.config;
  const p = (n: string) => (model.params.has(n) ? Array.from(model.params.get(n)!.dataSync()) : undefined);
  const wte = p('transformer.wte.weight')!;
  const wpe = p('transformer.wpe.weight')!;
  const T = ids.length;
  const hs = C / nHead;
  let x: Mat = ids.map((id, t) => Array.from({ length: C }, (_, c) => wte[id * C + c]! + wpe[t * C + c]!));
  for (let l = 0; l < nLayer; l++) {
    const h = `transformer.h.${l}`;
    const a = layerNorm(x, p(`${h}.ln_1.weight`)!, p(`${h}.ln_1.bias`));
    const qkv = matmul(a, p(`${h}.attn.c_attn.weight`)!, C, 3 * C, p(`${h}.attn.c_attn.bias`));
    const y: Mat = Array.from({ length: T }, () => new Array(C).fill(0));
    for (let head = 0; head < nHead; head++) {
      for (let i = 0; i < T; i++) {
        const q = qkv[i]!.slice(head * hs, (head + 1) * hs);
        const scores = Array.from({ length: i + 1 }, (_, j) => {
          const k = qkv[j]!.slice(C + head * hs, C + (head + 1) * hs);
          return q.reduce((s, v, d) => s + v * k[d]!, 0) / Math.sqrt(hs);
        });
        const m = Math.max(...scores);
        const e = scores.map((s) => Math.exp(s - m));
        const z = e.reduce((s, v) => s + v, 0);
        for (let j = 0; j <= i; j++) {
          const v = qkv[j]!.slice(2 * C + head * hs, 2 * C + (head + 1) * hs);
          for (let d = 0; d < hs; d++) y[i]![head * hs + d] = y[i]![head * hs + d]! + (e[j]! / z) * v[d]!;
        }
      }
    }
    const proj = matmul(y, p(`${h}.attn.c_proj.weight`)!, C, C, p(`${h}.attn.c_proj.bias`));
    x = x.map((row, t) => row.map((v, c) => v + proj[t]![c]!));
    const m2 = layerNorm(x, p(`${h}.ln_2.weight`)!, p(`${h}.ln_2.bias`));
    const up = matmul(m2, p(`${h}.mlp.c_fc.weight`)!, C, 4 * C, p(`${h}.mlp.c_fc.bias`)).map((r) => r.map(gelu));
    const down = matmul(up, p(`${h}.mlp.c_proj.weight`)!, 4 * C, C, p(`${h}.mlp.c_proj.bias`));
    x = x.map((row, t) => row.map((v, c) => v + down[t]![c]!));
  }
  const f = layerNorm(x, p('transformer.ln_f.weight')!, p('transformer.ln_f.bias'));
  return f.map((row) => Array.from({ length: V }, (_, v) => row.reduce((s, val, c) => s + val * wte[v * C + c]!, 0)));
}

describe.each(['wasm', 'cpu'] as const)('GPT forward on %s', (backend) => {
  for (const bias of [true, false]) {
    it(`matches a plain-JS nanoGPT forward (bias=${bias})`, async () => {
      await useBackend(backend);
      const config = { vocabSize: 13, blockSize: 10, nLayer: 2, nHead: 3, nEmbd: 12, dropout: 0, bias };
      const model = tinyModel(config, 31, 0.3);
      const ids = Array.from(randomIds(18, 13, 4));
      const got = model.forward(tf.tensor2d(Int32Array.from(ids), [2, 9], 'int32')).arraySync() as number[][][];
      for (let b = 0; b < 2; b++) {
        const want = referenceLogits(model, ids.slice(b * 9, b * 9 + 9));
        for (let t = 0; t < 9; t++) for (let v = 0; v < 13; v++) expect(got[b]![t]![v]).toBeCloseTo(want[t]![v]!, 4);
      }
      model.dispose();
    });
  }
});
