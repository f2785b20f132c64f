/**
 * Parity of the fused native ops (src/model/native/ops.ts) and the native AdamW kernel against
 * their composite definitions on the cpu backend (src/model/ops.ts and src/training/adamw.ts),
 * forward and gradient, on odd shapes.
 */
import { beforeAll, describe, expect, it } from 'vitest';
import { ODD, Rng, expectClose, floatInput, hasNative, intInput, parity, setup, tf, type Input } from './helpers.ts';
import * as ref from '../../src/model/ops.ts';
import * as nat from '../../src/model/native/ops.ts';
import { AdamW, globalNorm } from '../../src/training/adamw.ts';
import { nativeInfo, setNativeThreads } from '../../src/model/native/index.ts';

/**
 * Reference attention in gpt.ts's formulation: scores, additive causal mask, softmax, product;
 * `dropMask` (the probabilities' dropout multipliers) applied after the softmax, as nanoGPT does.
 */
function referenceAttention(q: tf.Tensor, kT: tf.Tensor, v: tf.Tensor, past: number, dropMask?: tf.Tensor): tf.Tensor {
  const t = q.shape[q.rank - 2]!;
  const s = kT.shape[kT.rank - 1]!;
  const hs = q.shape[q.rank - 1]!;
  const mask = new Float32Array(t * s);
  for (let i = 0; i < t; i++) for (let j = past + i + 1; j < s; j++) mask[i * s + j] = -1e9;
  const att = tf.add(tf.mul(tf.matMul(q, kT), 1 / Math.sqrt(hs)), tf.tensor2d(mask, [t, s]));
  const probs = tf.softmax(att);
  return tf.matMul(dropMask ? tf.mul(probs, dropMask) : probs, v);
}

/** Reference self-attention from qkv [B, T, 3C], as gpt.ts splits and merges heads. */
function referenceSelfAttention(qkv: tf.Tensor, nHead: number, dropMask?: tf.Tensor): tf.Tensor {
  const [B, T, C3] = qkv.shape as [number, number, number];
  const C = C3 / 3;
  const hs = C / nHead;
  const [q0, k0, v0] = tf.split(qkv, 3, 2) as [tf.Tensor, tf.Tensor, tf.Tensor];
  const q = tf.transpose(tf.reshape(q0, [B, T, nHead, hs]), [0, 2, 1, 3]);
  const kT = tf.transpose(tf.reshape(k0, [B, T, nHead, hs]), [0, 2, 3, 1]);
  const v = tf.transpose(tf.reshape(v0, [B, T, nHead, hs]), [0, 2, 1, 3]);
  const y = referenceAttention(q, kT, v, 0, dropMask);
  return tf.reshape(tf.transpose(y, [0, 2, 1, 3]), [B, T, C]);
}

/** x and a block's six weights, scaled by 1/√fan-in as trained ones are (activations stay O(1)). */
function blockInputs(rng: Rng, b: number, t: number, c: number): Input[] {
  const s = 1 / Math.sqrt(c);
  return [
    floatInput(rng, [b, t, c]),
    floatInput(rng, [c], 0.3, 1),
    floatInput(rng, [c, 3 * c], s),
    floatInput(rng, [c, c], s),
    floatInput(rng, [c], 0.3, 1),
    floatInput(rng, [c, 4 * c], s),
    floatInput(rng, [4 * c, c], s / 2),
  ];
}

describe.skipIf(!hasNative)('fused native ops match their composite form on cpu', () => {
  beforeAll(setup);

  it('gelu', () => {
    const rng = new Rng(21);
    for (const shape of [[1], [3, 17], [12, 64, 65], [5, 512]]) {
      parity(`gelu [${shape}]`, (x) => nat.gelu(x!), [floatInput(rng, shape, 2)], { reference: (x) => ref.gelu(x!) });
    }
  });

  it('layerNorm with and without bias', () => {
    const rng = new Rng(22);
    for (const [rows, cols] of [
      [1, 1],
      [3, 17],
      [17, 65],
      [768, 128],
      [65, 3],
    ] as [number, number][]) {
      const x = floatInput(rng, [rows, cols], 2, 0.5);
      const w = floatInput(rng, [cols], 0.5, 1);
      const b = floatInput(rng, [cols], 0.5);
      // cols = 1 normalises to exactly 0; keep it for the forward only.
      const grad = cols > 1;
      parity(`layerNorm ${rows}x${cols} +bias`, (a, c, d) => nat.layerNorm(a!, c!, d), [x, w, b], { reference: (a, c, d) => ref.layerNorm(a!, c!, d), grad, rtol: 5e-4 });
      parity(`layerNorm ${rows}x${cols}`, (a, c) => nat.layerNorm(a!, c!), [x, w], { reference: (a, c) => ref.layerNorm(a!, c!), grad, rtol: 5e-4 });
    }
    // rank 3 input, as in the model
    parity('layerNorm [3, 17, 65]', (a, c) => nat.layerNorm(a!, c!), [floatInput(rng, [3, 17, 65]), floatInput(rng, [65], 0.3, 1)], {
      reference: (a, c) => ref.layerNorm(a!, c!),
      rtol: 5e-4,
    });
  });

  it("Llama's rmsNorm, swiglu and rope (one kernel each way) match the composite ops", () => {
    const rng = new Rng(29);
    for (const [rows, cols] of [
      [1, 1],
      [3, 17],
      [17, 65],
      [300, 96],
    ] as [number, number][]) {
      const x = floatInput(rng, [rows, cols], 2, 0.5);
      const w = floatInput(rng, [cols], 0.5, 1);
      parity(`rmsNorm ${rows}x${cols}`, (a, c) => nat.rmsNorm(a!, c!, 1e-6), [x, w], { reference: (a, c) => ref.rmsNorm(a!, c!, 1e-6), rtol: 5e-4 });
      parity(`swiglu ${rows}x${cols}`, (g, u) => nat.swiglu(g!, u!), [floatInput(rng, [rows, cols], 6), floatInput(rng, [rows, cols], 2)], { reference: (g, u) => ref.swiglu(g!, u!), rtol: 5e-4 });
    }
    // RoPE on [B, T, H, d] with the model's tables (positions from 3: a KV cache's offset)
    for (const [b, t, h, d] of [
      [1, 1, 1, 2],
      [2, 17, 3, 16],
      [3, 65, 2, 64],
    ] as [number, number, number, number][]) {
      const invFreq = Float64Array.from({ length: d / 2 }, (_, i) => 10000 ** (-(2 * i) / d));
      parity(`rope [${b}, ${t}, ${h}, ${d}]`, (x) => {
        const { cos, sin } = ref.ropeTables(invFreq, 3, t);
        return nat.rope(x!, cos, sin);
      }, [floatInput(rng, [b, t, h, d], 2)], {
        reference: (x) => {
          const { cos, sin } = ref.ropeTables(invFreq, 3, t);
          return ref.rope(x!, cos, sin);
        },
      });
    }
    // rank 4 (per-head q/k norm of Qwen3), as in the model
    parity('rmsNorm [2, 5, 3, 16]', (a, c) => nat.rmsNorm(a!, c!, 1e-5), [floatInput(rng, [2, 5, 3, 16]), floatInput(rng, [16], 0.3, 1)], {
      reference: (a, c) => ref.rmsNorm(a!, c!, 1e-5),
      rtol: 5e-4,
    });
  });

  it('crossEntropy, including ignored targets (< 0)', () => {
    const rng = new Rng(23);
    for (const [rows, vocab] of [
      [1, 2], // the cpu reference's oneHot needs a vocabulary of 2 or more
      [3, 17],
      [768, 65],
      [17, 3],
      [65, 300],
    ] as [number, number][]) {
      const logits = floatInput(rng, [rows, vocab], 3);
      const targets = Int32Array.from({ length: rows }, (_, i) => (i % 5 === 4 ? -1 : rng.int(vocab)));
      parity(`crossEntropy ${rows}x${vocab}`, (l, t) => nat.crossEntropy(l!, t!), [logits, intInput([rows], targets)], {
        reference: (l, t) => ref.crossEntropy(l!, t!),
      });
    }
    // Every target ignored: loss 0, zero gradient (no division by zero).
    parity('crossEntropy all ignored', (l, t) => nat.crossEntropy(l!, t!), [floatInput(rng, [3, 5]), intInput([3], Int32Array.from([-1, -1, -1]))], {
      reference: (l, t) => ref.crossEntropy(l!, t!),
    });
  });

  it('causalAttention (gpt.ts layout), with and without a KV-cache offset', () => {
    const rng = new Rng(24);
    for (const [bh, t, past, d] of [
      [1, 1, 0, 1],
      [3, 17, 0, 5],
      [2, 1, 16, 8], // one new token against a cache of 16
      [1, 3, 62, 32],
      [48, 64, 0, 32],
      [2, 65, 0, 3],
    ] as [number, number, number, number][]) {
      const s = past + t;
      const q = floatInput(rng, [bh, 1, t, d]);
      const kT = floatInput(rng, [bh, 1, d, s]);
      const v = floatInput(rng, [bh, 1, s, d]);
      parity(`attention bh=${bh} t=${t} past=${past} d=${d}`, (a, b, c) => nat.causalAttention(a!, b!, c!, past), [q, kT, v], {
        reference: (a, b, c) => referenceAttention(a!, b!, c!, past),
      });
    }
  });

  it('selfAttention straight from qkv', () => {
    const rng = new Rng(25);
    for (const [b, t, heads, d] of [
      [1, 1, 1, 1],
      [3, 17, 2, 5],
      [12, 64, 4, 32],
      [2, 65, 3, 3],
      // Past one 128-query block of the product form (native/src/fused.cc), the last one partial.
      [2, 300, 2, 16],
    ] as [number, number, number, number][]) {
      const qkv = floatInput(rng, [b, t, 3 * heads * d]);
      parity(`selfAttention b=${b} t=${t} heads=${heads} d=${d}`, (x) => nat.selfAttention(x!, heads), [qkv], {
        reference: (x) => referenceSelfAttention(x!, heads),
      });
    }
  });

  it('matMul and linear (batch folded into rows; gradients through transpose flags)', () => {
    const rng = new Rng(26);
    for (const [lead, k, n] of [
      [[3, 17], 5, 9],
      [[1], 65, 1],
      [[12, 64], 128, 384],
    ] as [number[], number, number][]) {
      const x = floatInput(rng, [...lead, k]);
      const w = floatInput(rng, [k, n]);
      const bias = floatInput(rng, [n]);
      parity(`linear [${lead},${k}]x[${k},${n}]`, (a, b, c) => nat.linear(a!, b!, c), [x, w, bias], { reference: (a, b, c) => ref.linear(a!, b!, c) });
      parity(`matMul [${lead},${k}]x[${k},${n}]`, (a, b) => nat.matMul(a!, b!), [x, w], { reference: (a, b) => ref.matMul(a!, b!) });
    }
    for (const m of ODD) {
      const a = floatInput(rng, [2, m, 3]);
      const b = floatInput(rng, [2, 3, m]);
      parity(`batched matMul m=${m}`, (x, y) => nat.matMul(x!, y!), [a, b], { reference: (x, y) => ref.matMul(x!, y!) });
    }
  });

  it('linear and linearGelu: one kernel per direction (gradients dx and dw side by side) match on 1-4 threads', () => {
    const rng = new Rng(28);
    const threads = nativeInfo()!.threads;
    try {
      for (const n of [1, 2, 3, 4]) {
        setNativeThreads(n);
        for (const [lead, k, out] of [
          [[12, 64], 128, 384], // the benchmark's shapes: the two products on different threads
          [[65], 17, 33], // odd: row blocks of 16 leave a remainder
          [[3, 1], 1, 65],
        ] as [number[], number, number][]) {
          const x = floatInput(rng, [...lead, k]);
          const w = floatInput(rng, [k, out]);
          parity(`linear ${n} threads [${lead},${k}]x[${k},${out}]`, (a, b) => nat.linear(a!, b!), [x, w], { reference: (a, b) => ref.linear(a!, b!) });
          parity(`linearGelu ${n} threads [${lead},${k}]x[${k},${out}]`, (a, b) => nat.linearGelu(a!, b!), [x, w], {
            reference: (a, b) => ref.gelu(ref.linear(a!, b!)),
          });
        }
      }
    } finally {
      setNativeThreads(threads);
    }
  });

  it('block: one kernel forward and one backward equal the composite block (x and every weight), 1 and 2 threads', () => {
    const rng = new Rng(31);
    const threads = nativeInfo()!.threads;
    const refBlock = (heads: number) => (x: tf.Tensor, ln1: tf.Tensor, attn: tf.Tensor, proj: tf.Tensor, ln2: tf.Tensor, fc: tf.Tensor, fc2: tf.Tensor) => {
      const x1 = tf.add(x, ref.linear(referenceSelfAttention(ref.linear(ref.layerNorm(x, ln1), attn), heads), proj));
      return tf.add(x1, ref.linear(ref.gelu(ref.linear(ref.layerNorm(x1, ln2), fc)), fc2));
    };
    try {
      for (const n of [1, 2]) {
        setNativeThreads(n);
        for (const [b, t, heads, d] of [
          [2, 17, 3, 8],
          [1, 1, 2, 4],
          [3, 64, 4, 32], // the benchmark's block, a smaller batch
        ] as [number, number, number, number][]) {
          const inputs = blockInputs(rng, b, t, heads * d);
          parity(
            `block ${n} threads b=${b} t=${t} heads=${heads} d=${d}`,
            (x, ln1w, attnw, projw, ln2w, fcw, fc2w) => nat.block(x!, { ln1w: ln1w!, attnw: attnw!, projw: projw!, ln2w: ln2w!, fcw: fcw!, fc2w: fc2w! }, heads),
            inputs,
            { reference: (...xs) => refBlock(heads)(...(xs as [tf.Tensor, tf.Tensor, tf.Tensor, tf.Tensor, tf.Tensor, tf.Tensor, tf.Tensor])), rtol: 5e-4 },
          );
        }
      }
    } finally {
      setNativeThreads(threads);
    }
  });

  it('dropout: masks of 0 or 1/(1-rate) at the right rate, fixed by (seed, site), the same mask in the gradient, any thread count', async () => {
    await tf.setBackend('native');
    const threads = nativeInfo()!.threads;
    const n = 100_003;
    const maskOf = (rate: number, seed: number, site: number) => nat.dropout(tf.ones([n]), { rate, seed }, site).dataSync() as Float32Array;
    try {
      for (const rate of [0.1, 0.5]) {
        const m = maskOf(rate, 7, 1);
        const kept = m.filter((v) => v !== 0).length;
        const sd = Math.sqrt(n * rate * (1 - rate));
        expect(Math.abs(kept - n * (1 - rate)), `rate ${rate}: kept ${kept} of ${n}`).toBeLessThan(5 * sd);
        expect(m.every((v) => v === 0 || Math.abs(v - 1 / (1 - rate)) < 1e-6)).toBe(true);
        setNativeThreads(1);
        expect(Buffer.from(maskOf(rate, 7, 1).buffer).equals(Buffer.from(m.buffer)), 'one thread draws the same mask').toBe(true);
        setNativeThreads(threads);
        const other = [maskOf(rate, 8, 1), maskOf(rate, 7, 2)];
        for (const o of other) expect(o.some((v, i) => (v === 0) !== (m[i] === 0))).toBe(true);
        // The gradient multiplies by the same mask.
        const dy = tf.tensor(Float32Array.from({ length: n }, (_, i) => (i % 13) - 6));
        const g = tf.grad((x: tf.Tensor) => tf.sum(tf.mul(nat.dropout(x, { rate, seed: 7 }, 1), dy)))(tf.zeros([n])).dataSync();
        const dyv = dy.dataSync();
        for (let i = 0; i < n; i += 97) expect(g[i]).toBeCloseTo(dyv[i]! * m[i]!, 5);
      }
      expect(nat.dropout(tf.ones([5]), { rate: 0, seed: 1 }, 0).dataSync()).toEqual(Float32Array.of(1, 1, 1, 1, 1));
    } finally {
      setNativeThreads(threads);
    }
  });

  it('block with dropout equals the composite block with the same masks (attention probabilities and both residual branches)', async () => {
    const rng = new Rng(32);
    const rate = 0.2;
    const seed = 12345;
    const [b, t, heads, d] = [2, 17, 3, 8];
    const c = heads * d;
    await tf.setBackend('native');
    const mask = (shape: number[], site: number) => nat.dropout(tf.ones(shape), { rate, seed }, site).dataSync().slice() as Float32Array;
    const m0 = mask([b, heads, t, t], nat.DROPOUT_SITE.attention);
    const m1 = mask([b, t, c], nat.DROPOUT_SITE.residualAttention);
    const m2 = mask([b, t, c], nat.DROPOUT_SITE.residualMlp);
    expect(m0.some((v) => v === 0) && m1.some((v) => v === 0) && m2.some((v) => v === 0)).toBe(true);
    const inputs = blockInputs(rng, b, t, c);
    const reference = (x: tf.Tensor, ln1: tf.Tensor, attn: tf.Tensor, proj: tf.Tensor, ln2: tf.Tensor, fc: tf.Tensor, fc2: tf.Tensor) => {
      const att = referenceSelfAttention(ref.linear(ref.layerNorm(x, ln1), attn), heads, tf.tensor(m0, [b, heads, t, t]));
      const x1 = tf.add(x, tf.mul(ref.linear(att, proj), tf.tensor(m1, [b, t, c])));
      return tf.add(x1, tf.mul(ref.linear(ref.gelu(ref.linear(ref.layerNorm(x1, ln2), fc)), fc2), tf.tensor(m2, [b, t, c])));
    };
    parity(
      'block with dropout',
      (x, ln1w, attnw, projw, ln2w, fcw, fc2w) => nat.block(x!, { ln1w: ln1w!, attnw: attnw!, projw: projw!, ln2w: ln2w!, fcw: fcw!, fc2w: fc2w! }, heads, 1e-5, { rate, seed }),
      inputs,
      { reference: (...xs) => reference(...(xs as [tf.Tensor, tf.Tensor, tf.Tensor, tf.Tensor, tf.Tensor, tf.Tensor, tf.Tensor])), rtol: 5e-4 },
    );
  });

  it('TeamllmAdamWMulti (one call for all parameters) equals TeamllmAdamW per parameter, bit for bit', async () => {
    await tf.setBackend('native');
    expect(tf.getKernel('TeamllmAdamWMulti', 'native')).toBeDefined();
    const rng = new Rng(29);
    const shapes = [[1], [17, 3], [65, 128], [100_003]]; // the last spans several 32K chunks
    const names = shapes.map((_, i) => `p${i}`);
    const make = () => new Map(names.map((n, i) => [n, tf.tensor(rng.array(shapes[i]!.reduce((a, b) => a * b, 1)), shapes[i]!)]));
    const params = make();
    const moments1 = make();
    const moments2 = make();
    const grads = make();
    const v = new Map([...moments2].map(([n, t]) => [n, tf.abs(t)]));
    const attrs = { lr: 3e-3, beta1: 0.9, beta2: 0.99, eps: 1e-8, bc1: 0.19, bc2: 0.0297, gradScale: 0.7 };
    const decayOf = (n: string) => (n === 'p1' ? 0 : 0.1);
    const single = names.map((n) =>
      (tf.engine().runKernel('TeamllmAdamW', { p: params.get(n)!, g: grads.get(n)!, m: moments1.get(n)!, v: v.get(n)! }, { ...attrs, weightDecay: decayOf(n) }) as tf.Tensor[]).map((t) =>
        t.dataSync(),
      ),
    );
    const inputs: Record<string, tf.Tensor> = {};
    names.forEach((n, i) => Object.assign(inputs, { [`p${i}`]: params.get(n)!, [`g${i}`]: grads.get(n)!, [`m${i}`]: moments1.get(n)!, [`v${i}`]: v.get(n)! }));
    const multi = tf.engine().runKernel('TeamllmAdamWMulti', inputs, { ...attrs, weightDecays: names.map(decayOf) } as unknown as tf.NamedAttrMap) as tf.Tensor[];
    expect(multi.length).toBe(3 * names.length);
    names.forEach((n, i) => {
      for (let j = 0; j < 3; j++) {
        const got = multi[3 * i + j]!;
        expect(got.shape, `${n} output ${j} shape`).toEqual(shapes[i]);
        expect(Buffer.from(got.dataSync().buffer).equals(Buffer.from(single[i]![j]!.buffer)), `${n} output ${j}`).toBe(true);
      }
    });
    // The update really moved every parameter (a kernel that wrote nothing would fail above too).
    expect(multi[0]!.dataSync()[0]).not.toBe(params.get('p0')!.dataSync()[0]);
  });

  it('TeamllmSumSquares: the global gradient norm equals the composite form on cpu', async () => {
    const rng = new Rng(30);
    const shapes = [[1], [17, 3], [65, 128], [200_001]];
    const data = shapes.map((s) => rng.array(s.reduce((a, b) => a * b, 1)));
    const norms: number[] = [];
    for (const backend of ['cpu', 'native']) {
      await tf.setBackend(backend);
      const ts = data.map((d, i) => tf.tensor(d, shapes[i]!));
      norms.push(globalNorm(ts));
      ts.forEach((t) => t.dispose());
    }
    expect(tf.getKernel('TeamllmSumSquares', 'native')).toBeDefined();
    let exact = 0;
    for (const d of data) for (const x of d) exact += x * x;
    expect(Math.abs(norms[1]! - Math.sqrt(exact)) / Math.sqrt(exact)).toBeLessThan(1e-6);
    expect(Math.abs(norms[0]! - norms[1]!) / norms[0]!).toBeLessThan(1e-4);
  });

  it('TeamllmAdamW: the native update equals the JavaScript kernel on cpu', async () => {
    const rng = new Rng(27);
    const shapes = [[1], [17, 3], [65, 128], [1000]];
    const names = shapes.map((_, i) => `p${i}`);
    const data = shapes.map((s) => ({ p: rng.array(s.reduce((a, b) => a * b, 1)), g: rng.array(s.reduce((a, b) => a * b, 1)) }));
    const runOn = async (backend: string) => {
      await tf.setBackend(backend);
      const opt = new AdamW({ beta1: 0.9, beta2: 0.99, weightDecay: 0.1 }, (n) => n !== 'p0');
      let params = new Map(names.map((n, i) => [n, tf.tensor(data[i]!.p.slice(), shapes[i]!)]));
      for (let step = 0; step < 3; step++) {
        const grads = new Map(names.map((n, i) => [n, tf.tensor(data[i]!.g.map((v) => v * (step + 1)), shapes[i]!)]));
        const next = opt.apply(params, grads, 1e-2, 0.7);
        for (const t of params.values()) t.dispose();
        for (const t of grads.values()) t.dispose();
        params = next;
      }
      const out = names.map((n) => Float32Array.from(params.get(n)!.dataSync()));
      const moments = [...opt.stateTensors().values()].map((t) => Float32Array.from(t.dataSync()));
      for (const t of params.values()) t.dispose();
      opt.dispose();
      return { out, moments };
    };
    const cpu = await runOn('cpu');
    const native = await runOn('native');
    expect(tf.getKernel('TeamllmAdamW', 'native')).toBeDefined();
    cpu.out.forEach((v, i) => expectClose(native.out[i]!, v, `adamw param ${i}`, 1e-5, 1e-6));
    cpu.moments.forEach((v, i) => expectClose(native.moments[i]!, v, `adamw moment ${i}`, 1e-5, 1e-7));
  });
});
