/**
 * Parity of every kernel the addon replaces, against the tfjs cpu backend: forward values and the
 * gradients autodiff computes through them (which themselves run on the native kernels), on random
 * shapes with odd sizes.
 */
import { beforeAll, describe, it } from 'vitest';
import { ODD, Rng, floatInput, hasNative, intInput, parity, setup, size, tf } from './helpers.ts';

describe.skipIf(!hasNative)('native kernels match the cpu backend', () => {
  beforeAll(setup);

  it('BatchMatMul: 2-D, every transpose combination, odd sizes', () => {
    const rng = new Rng(1);
    const dims = [...ODD, 128];
    let n = 0;
    for (const m of dims) {
      for (const k of [1, 17, 65]) {
        const nn = dims[(n++ * 7) % dims.length]!;
        for (const ta of [false, true]) {
          for (const tb of [false, true]) {
            const a = floatInput(rng, ta ? [k, m] : [m, k]);
            const b = floatInput(rng, tb ? [nn, k] : [k, nn]);
            parity(`matmul ${m}x${k}x${nn} ta=${ta} tb=${tb}`, (x, y) => tf.matMul(x!, y!, ta, tb), [a, b]);
          }
        }
      }
    }
  });

  it('BatchMatMul: batched, broadcast batch, single rows (gemv) and large splits', () => {
    const rng = new Rng(2);
    const cases: [number[], number[], boolean, boolean][] = [
      [[3, 17, 5], [3, 5, 9], false, false],
      [[2, 3, 17, 32], [2, 3, 32, 17], false, false],
      [[48, 64, 32], [48, 64, 32], false, true], // attention scores with kᵀ as a flag
      [[48, 64, 64], [48, 64, 32], true, false],
      [[5, 1, 65], [1, 65, 3], false, false], // broadcast b
      [[1, 7, 3], [4, 3, 17], false, false], // broadcast a
      [[1, 384], [384, 1152], false, false], // generation: vector × matrix
      [[1, 384], [1152, 384], false, true],
      [[384, 1], [384, 129], true, false],
      [[300, 200], [200, 260], false, false], // split into row blocks
      [[3, 2, 130], [3, 130, 70], false, false],
    ];
    for (const [as, bs, ta, tb] of cases) {
      // tfjs's own matMul gradient does not reduce broadcast batch dims (it throws on cpu too):
      // compare values only there.
      const broadcast = as.length > 2 && bs.length > 2 && size(as.slice(0, -2)) !== size(bs.slice(0, -2));
      parity(`matmul [${as}]x[${bs}] ta=${ta} tb=${tb}`, (x, y) => tf.matMul(x!, y!, ta, tb), [floatInput(rng, as), floatInput(rng, bs)], {
        grad: !broadcast,
      });
    }
  });

  it('_FusedMatMul: bias and activations', () => {
    const rng = new Rng(3);
    for (const activation of ['linear', 'relu', 'relu6', 'sigmoid', 'elu', 'leakyrelu'] as const) {
      for (const [m, k, n] of [
        [17, 3, 65],
        [1, 65, 17],
        [64, 32, 3],
      ] as const) {
        const a = floatInput(rng, [m, k]);
        const b = floatInput(rng, [k, n]);
        const bias = floatInput(rng, [n]);
        // Gradients of relu6/elu/leakyrelu are defined in tfjs only for some activations; test values for all.
        const grad = activation === 'linear' || activation === 'relu' || activation === 'sigmoid';
        parity(
          `fused matmul ${m}x${k}x${n} ${activation}`,
          (x, y, z) => tf.fused.matMul({ a: x as tf.Tensor2D, b: y as tf.Tensor2D, bias: z!, activation }),
          [a, b, bias],
          { grad },
        );
      }
    }
    parity(
      'fused matmul scalar bias, transposed',
      (x, y, z) => tf.fused.matMul({ a: x as tf.Tensor2D, b: y as tf.Tensor2D, bias: z!, transposeA: true, transposeB: true }),
      [floatInput(rng, [17, 3]), floatInput(rng, [5, 17]), floatInput(rng, [1])],
    );
  });

  it('unary ops', () => {
    const rng = new Rng(4);
    const ops: [string, (x: tf.Tensor) => tf.Tensor, number, number][] = [
      ['exp', tf.exp, 3, 0],
      ['log', tf.log, 1, 3], // positive inputs (offset)
      ['neg', tf.neg, 1, 0],
      ['sqrt', tf.sqrt, 1, 4],
      ['rsqrt', tf.rsqrt, 1, 4],
      ['square', tf.square, 2, 0],
      ['erf', tf.erf, 2, 0],
      ['tanh', tf.tanh, 2, 0],
      ['sigmoid', tf.sigmoid, 3, 0],
      ['relu', tf.relu, 1, 0],
      ['abs', tf.abs, 1, 0],
      ['reciprocal', tf.reciprocal, 1, 5],
    ];
    for (const [name, op, scale, offset] of ops) {
      for (const shape of [[1], [3, 17], [65, 65, 3], [70000]]) {
        parity(`${name} [${shape}]`, (x) => op(x!), [floatInput(rng, shape, scale, offset)], { grad: size(shape) < 70000 });
      }
    }
  });

  it('unary ops keep special values (NaN, ±Infinity, overflow)', () => {
    const special = Float32Array.from([NaN, Infinity, -Infinity, 0, -0, 100, -100, 88.5, -87.5, 1e-30]);
    for (const op of [tf.exp, tf.erf, tf.sigmoid, tf.relu, tf.neg, tf.abs, tf.square]) {
      parity(`special ${op.name}`, (x) => op(x!), [{ shape: [special.length], data: special }], { grad: false, rtol: 1e-5 });
    }
  });

  it('binary ops with broadcasting', () => {
    const rng = new Rng(5);
    const shapes: [number[], number[]][] = [
      [[17], [17]],
      [[3, 17], [17]],
      [[3, 17], [3, 1]],
      [[12, 4, 64, 64], [64, 64]], // the causal mask
      [[2, 3, 1, 5], [1, 3, 17, 1]],
      [[65], [1]],
      [[1], [3, 65]],
      [[], [3, 3]],
      [[5, 1, 3], [1, 7, 1]],
      [[100000], [100000]],
    ];
    const ops: [string, (a: tf.Tensor, b: tf.Tensor) => tf.Tensor, number][] = [
      ['add', tf.add, 0],
      ['sub', tf.sub, 0],
      ['mul', tf.mul, 0],
      ['div', tf.div, 3], // denominators away from 0
      ['maximum', tf.maximum, 0],
      ['minimum', tf.minimum, 0],
      ['squaredDifference', tf.squaredDifference, 0],
      ['pow', tf.pow, 2],
    ];
    for (const [name, op, offset] of ops) {
      for (const [as, bs] of shapes) {
        const a = floatInput(rng, as, 1, name === 'pow' ? offset : 0);
        const b = floatInput(rng, bs, name === 'pow' ? 0.5 : 1, name === 'div' ? offset : 0);
        // tfjs's Maximum/Minimum/SquaredDifference gradients do not reduce broadcast axes (they
        // throw on cpu too): values only there.
        const minMax = name === 'maximum' || name === 'minimum' || name === 'squaredDifference';
        const grad = size(as) < 100000 && (!minMax || as.join() === bs.join());
        parity(`${name} [${as}] [${bs}]`, (x, y) => op(x!, y!), [a, b], { grad });
      }
    }
  });

  it('int32 arithmetic falls back to the cpu kernels', () => {
    const a = intInput([5], Int32Array.from([1, 2, 3, 4, 5]));
    const b = intInput([5], Int32Array.from([5, 4, 3, 2, 1]));
    parity('int add', (x, y) => tf.cast(tf.add(x!, y!), 'float32'), [a, b], { grad: false });
    parity('int mul', (x, y) => tf.cast(tf.mul(x!, y!), 'float32'), [a, b], { grad: false });
  });

  it('Transpose: permutations of rank 2 to 5', () => {
    const rng = new Rng(6);
    const cases: [number[], number[]][] = [
      [[17, 65], [1, 0]],
      [[1, 3], [1, 0]],
      [[12, 64, 4, 32], [0, 2, 1, 3]],
      [[12, 64, 4, 32], [0, 2, 3, 1]],
      [[12, 4, 64, 32], [0, 2, 1, 3]],
      [[3, 17, 5], [2, 1, 0]],
      [[3, 17, 5], [1, 2, 0]],
      [[3, 1, 5, 1], [3, 2, 1, 0]],
      [[2, 3, 4, 5, 6], [4, 0, 3, 1, 2]],
      [[65, 3], [0, 1]],
    ];
    for (const [shape, perm] of cases) {
      parity(`transpose [${shape}] perm [${perm}]`, (x) => tf.transpose(x!, perm), [floatInput(rng, shape)]);
    }
  });

  it('reductions over contiguous and split axes, with and without keepDims', () => {
    const rng = new Rng(7);
    const cases: [number[], number | number[] | undefined][] = [
      [[17], 0],
      [[3, 17], 1],
      [[3, 17], 0],
      [[3, 17], undefined],
      [[12, 64, 65], -1],
      [[12, 64, 65], [0, 1]],
      [[5, 3, 17], 1],
      [[5, 3, 17], [0, 2]], // not contiguous: cpu path
      [[1, 1, 3], [0, 1]],
      [[768, 128], 0],
    ];
    const ops: [string, (x: tf.Tensor, axis: number | number[] | undefined, keep: boolean) => tf.Tensor, boolean][] = [
      ['sum', tf.sum, true],
      ['mean', tf.mean, true],
      ['max', tf.max, true],
      ['min', tf.min, true],
      ['prod', tf.prod, false],
    ];
    for (const [name, op, grad] of ops) {
      for (const [shape, axis] of cases) {
        for (const keep of [false, true]) {
          const scale = name === 'prod' ? 0.2 : 1;
          const offset = name === 'prod' ? 1 : 0;
          const small = size(shape) <= 200 || name !== 'prod';
          if (!small) continue;
          parity(`${name} [${shape}] axis ${JSON.stringify(axis)} keep=${keep}`, (x) => op(x!, axis, keep), [floatInput(rng, shape, scale, offset)], {
            grad,
            rtol: 2e-4,
          });
        }
      }
    }
  });

  it('Softmax and logSoftmax over the last axis', () => {
    const rng = new Rng(8);
    for (const shape of [[1], [3, 17], [12, 4, 64, 64], [65, 65], [2, 1]]) {
      parity(`softmax [${shape}]`, (x) => tf.softmax(x!), [floatInput(rng, shape, 3)]);
      parity(`logSoftmax [${shape}]`, (x) => tf.logSoftmax(x!), [floatInput(rng, shape, 3)]);
    }
  });

  it('SplitV, Concat and Slice (strided copies)', () => {
    const rng = new Rng(11);
    for (const [shape, splits, axis] of [
      [[12, 64, 384], 3, 2],
      [[3, 17], [1, 16], 1],
      [[17, 5], [3, 1, 13], 0],
      [[2, 65, 3], [64, 1], 1],
      [[1, 3, 1], 3, 1],
    ] as [number[], number | number[], number][]) {
      parity(
        `split [${shape}] ${JSON.stringify(splits)} axis ${axis}`,
        (x) => tf.concat(tf.split(x!, splits, axis).map((p, i) => tf.mul(p, i + 1)), axis),
        [floatInput(rng, shape)],
      );
    }
    for (const [shapes, axis] of [
      [[[3, 17], [3, 1], [3, 5]], 1],
      [[[1, 4, 2, 32], [1, 4, 1, 32]], 2], // KV cache append
      [[[17], [65]], 0],
      [[[2, 3, 4], [2, 3, 4]], 0],
    ] as [number[][], number][]) {
      parity(`concat ${JSON.stringify(shapes)} axis ${axis}`, (...xs) => tf.concat(xs, axis), shapes.map((sh) => floatInput(rng, sh)));
    }
    for (const [shape, begin, sz] of [
      [[12, 64, 65], [0, 63, 0], [12, 1, 65]],
      [[64, 128], [3, 0], [17, 128]], // contiguous: a view
      [[5, 17], [1, 2], [3, 14]],
      [[2, 3, 4, 5], [1, 0, 1, 2], [1, 3, 2, 3]],
      [[65], [1], [63]],
    ] as [number[], number[], number[]][]) {
      parity(`slice [${shape}] at [${begin}] size [${sz}]`, (x) => tf.slice(x!, begin, sz), [floatInput(rng, shape)]);
    }
    // PadV2 is also the gradient of slice (checked above); direct cases with a constant:
    for (const [shape, paddings] of [
      [[3, 17], [[1, 2], [0, 3]]],
      [[1], [[0, 0]]],
      [[2, 3, 5], [[0, 1], [2, 0], [1, 1]]],
      [[64, 128], [[0, 0], [0, 0]]],
    ] as [number[], [number, number][]][]) {
      parity(`pad [${shape}] ${JSON.stringify(paddings)}`, (x) => tf.pad(x!, paddings, 0.5), [floatInput(rng, shape)]);
    }
  });

  it('AddN', () => {
    const rng = new Rng(9);
    for (const shape of [[1], [3, 17], [65, 65]]) {
      for (const count of [2, 3, 7]) {
        const inputs = Array.from({ length: count }, () => floatInput(rng, shape));
        parity(`addN ${count} x [${shape}]`, (...xs) => tf.addN(xs), inputs);
      }
    }
  });

  it('GatherV2 (embedding lookup) and its gradient UnsortedSegmentSum', () => {
    const rng = new Rng(10);
    for (const [rows, width, idsShape] of [
      [65, 128, [12, 64]],
      [3, 17, [5]],
      [1, 1, [1]],
      [17, 65, [3, 1, 2]],
    ] as [number, number, number[]][]) {
      const ids = Int32Array.from({ length: size(idsShape) }, () => rng.int(rows));
      parity(`gather ${rows}x${width} ids [${idsShape}]`, (t, i) => tf.gather(t!, i!), [floatInput(rng, [rows, width]), intInput(idsShape, ids)]);
    }
    // Direct segment sums, including ids out of range (dropped, as on cpu).
    const x = floatInput(rng, [7, 3]);
    const seg = intInput([7], Int32Array.from([0, 2, 2, 4, 0, 9, -1]));
    parity('unsortedSegmentSum', (a, s) => tf.unsortedSegmentSum(a!, s as tf.Tensor1D, 5), [x, seg], { grad: false });
  });

  it('gather rejects out-of-range ids like the cpu backend', async () => {
    await tf.setBackend('native');
    const table = tf.ones([4, 2]);
    const ids = tf.tensor1d([1, 4], 'int32');
    let message = '';
    try {
      tf.gather(table, ids);
    } catch (err) {
      message = (err as Error).message;
    }
    table.dispose();
    ids.dispose();
    if (!/not in \[0, 3\]/.test(message)) throw new Error(`expected an index error, got "${message}"`);
  });
});
