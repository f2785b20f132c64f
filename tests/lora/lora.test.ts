import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { tf, useBackend as useTestBackend, tinyModel, tinyConfig, randomIds } from '../model/helpers.ts';
import { initBackend } from '../../src/model/backend.ts';
import { nativeReady } from '../native/helpers.ts';
import { GPT } from '../../src/model/gpt.ts';
import { Random } from '../../src/model/random.ts';
import { LoadedModel } from '../../src/model/loaded-model.ts';
import { CharTokenizer } from '../../src/model/tokenizer/index.ts';
import { AdamW } from '../../src/training/adamw.ts';
import { AdapterSet, AdapterStore, LoraAdapter, modelFingerprint, parseLoraTargets, resolveLoraConfig } from '../../src/model/lora/index.ts';
import { expectAdapterGradientsMatch } from './adapter-gradients.ts';

/** The native OpenBLAS backend joins the backends under test where its addon is built (always under CI=true). */
const hasNative = (await nativeReady()).ok;
const BACKENDS = ['cpu', 'wasm', ...(hasNative ? ['native' as const] : [])] as const;
type TestBackend = 'cpu' | 'wasm' | 'native';
async function useBackend(name: TestBackend): Promise<void> {
  if (name === 'native') await initBackend('native', { log: () => {} });
  else await useTestBackend(name);
}

const tmpRoot = await fs.mkdtemp(path.join(os.tmpdir(), 'teamllm-lora-test-'));
afterAll(() => fs.rm(tmpRoot, { recursive: true, force: true }));

const B = 2;
const T = tinyConfig.blockSize;
const ids = () => tf.tensor2d(randomIds(B * T, tinyConfig.vocabSize, 11), [B, T], 'int32');

function values(t: tf.Tensor): Float32Array {
  return Float32Array.from(t.dataSync() as Float32Array);
}

function maxAbsDiff(a: Float32Array, b: Float32Array): number {
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]! - b[i]!));
  return m;
}

/** Gives B (and A) random values so the adapter does something. */
function randomize(adapter: LoraAdapter, seed: number, std = 0.3): void {
  const rng = new Random(seed);
  const next = new Map<string, tf.Tensor>();
  for (const name of adapter.paramNames) {
    const p = adapter.params.get(name)!;
    next.set(name, tf.keep(tf.tensor(rng.normalArray(p.size, std), p.shape)));
  }
  adapter.setParams(next);
}

function logits(model: GPT, x: tf.Tensor): Float32Array {
  return tf.tidy(() => values(model.forward(x)));
}

describe('LoRA configuration', () => {
  it('parses target modules by name, PEFT aliases and groups, and rejects unknown ones', () => {
    expect(resolveLoraConfig({}).targets).toEqual(['q', 'k', 'v', 'attn_out']);
    expect(parseLoraTargets('q_proj, v_proj')).toEqual(['q', 'v']);
    expect(parseLoraTargets(['mlp', 'o_proj'])).toEqual(['attn_out', 'mlp_in', 'mlp_out']);
    expect(parseLoraTargets('all')).toEqual(['q', 'k', 'v', 'attn_out', 'mlp_in', 'mlp_out']);
    expect(() => parseLoraTargets('lm_head')).toThrow(/Unknown LoRA target module "lm_head"/);
    const c = resolveLoraConfig({ rank: 4, alpha: 8 });
    expect(c).toMatchObject({ rank: 4, alpha: 8, dropout: 0.05 });
  });
});

describe.each(BACKENDS as readonly TestBackend[])('LoRA on %s', (backend) => {
  it('a fresh adapter (A random, B zero) changes nothing', async () => {
    await useBackend(backend);
    const model = tinyModel();
    const x = ids();
    const before = logits(model, x);
    const adapter = LoraAdapter.create(model, { rank: 4, alpha: 8, targets: 'all' });
    // A is random, B is zero.
    const a = values(adapter.params.get('transformer.h.0.attn.q.lora_A')!);
    expect(a.some((v) => v !== 0)).toBe(true);
    expect(Math.max(...a.map(Math.abs))).toBeLessThanOrEqual(1 / Math.sqrt(tinyConfig.nEmbd));
    expect(values(adapter.params.get('transformer.h.0.attn.q.lora_B')!).every((v) => v === 0)).toBe(true);
    adapter.attach(model);
    // Bit for bit; on 'native' the plain model runs fused kernels and the hooked one composed ops.
    if (backend === 'native') expect(maxAbsDiff(logits(model, x), before)).toBeLessThan(1e-4);
    else expect(Array.from(logits(model, x))).toEqual(Array.from(before));
    LoraAdapter.detach(model);
    adapter.dispose();
    model.dispose();
  });

  it('merged and unmerged give the same logits; unmerge restores the base weights', async () => {
    await useBackend(backend);
    const model = tinyModel();
    const x = ids();
    const base = logits(model, x);
    const baseWeights = model.paramNames.map((n) => values(model.params.get(n)!));
    const adapter = LoraAdapter.create(model, { rank: 3, alpha: 6, targets: ['q', 'v', 'attn_out', 'mlp_in', 'mlp_out'] });
    randomize(adapter, 5);
    adapter.attach(model);
    const unmerged = logits(model, x);
    expect(maxAbsDiff(unmerged, base)).toBeGreaterThan(1e-2); // the adapter does something
    LoraAdapter.detach(model);
    adapter.merge(model);
    expect(model.projectionHook).toBeUndefined();
    const merged = logits(model, x);
    expect(maxAbsDiff(merged, unmerged)).toBeLessThan(1e-4);
    // Another adapter cannot go on top of a merged one.
    expect(() => LoraAdapter.create(model).attach(model)).toThrow(/merged into its weights/);
    adapter.unmerge(model);
    model.paramNames.forEach((n, i) => expect(maxAbsDiff(values(model.params.get(n)!), baseWeights[i]!)).toBeLessThan(1e-5));
    expect(maxAbsDiff(logits(model, x), base)).toBeLessThan(1e-4);
    adapter.dispose();
    model.dispose();
  });

  it('the cached (generation) forward applies the adapter like the full forward', async () => {
    await useBackend(backend);
    const model = tinyModel();
    const adapter = LoraAdapter.create(model, { rank: 2, alpha: 4, targets: 'all' });
    randomize(adapter, 9);
    adapter.attach(model);
    const seq = randomIds(T, tinyConfig.vocabSize, 3);
    const full = tf.tidy(() => values(tf.slice(model.forward(tf.tensor2d(seq, [1, T], 'int32')), [0, T - 1, 0], [1, 1, -1])));
    const cache = model.emptyCache();
    const first = tf.tensor2d(seq.slice(0, T - 3), [1, T - 3], 'int32');
    model.forwardCached(first, cache).dispose();
    let last: tf.Tensor | undefined;
    for (let t = T - 3; t < T; t++) {
      last?.dispose();
      last = model.forwardCached(tf.tensor2d([seq[t]!], [1, 1], 'int32'), cache);
    }
    expect(maxAbsDiff(values(last!), full)).toBeLessThan(1e-4);
    GPT.disposeCache(cache);
    adapter.dispose();
    model.dispose();
  });

  it('gradients of the LoRA path match finite differences', async () => {
    await useBackend(backend);
    const model = tinyModel();
    const adapter = LoraAdapter.create(model, { rank: 2, alpha: 3, dropout: 0, targets: ['q', 'k', 'v', 'attn_out', 'mlp_in', 'mlp_out'] });
    randomize(adapter, 21, 0.4);
    adapter.attach(model);
    const x = ids();
    const yIds = randomIds(B * T, tinyConfig.vocabSize, 12);
    yIds[2] = -1;
    const y = tf.tensor2d(yIds, [B, T], 'int32');
    const names = adapter.paramNames;
    const lossOf = (ps: tf.Tensor[]) => model.loss(x, y, { training: true }, new Map([...model.params, ...names.map((n, i) => [n, ps[i]!] as [string, tf.Tensor])]));
    expectAdapterGradientsMatch(adapter, lossOf, { h: 1e-2, rng: new Random(4) });
    adapter.dispose();
    model.dispose();
  });
});

describe('LoRA training, files and serving (cpu)', () => {
  it('trains only the adapter: the loss falls, base weights stay bit-identical, ~few % of parameters', async () => {
    await useBackend('cpu');
    const config = { vocabSize: 13, blockSize: 8, nLayer: 2, nHead: 2, nEmbd: 32, dropout: 0, bias: false };
    const model = GPT.create(config, 3);
    const baseWeights = model.paramNames.map((n) => values(model.params.get(n)!));
    const adapter = LoraAdapter.create(model, { rank: 2, alpha: 4, dropout: 0.1 });
    expect(adapter.share(model)).toBeLessThan(0.05);
    adapter.attach(model);
    const x = tf.tensor2d(randomIds(16, 13, 1), [2, 8], 'int32');
    const y = tf.tensor2d(randomIds(16, 13, 2), [2, 8], 'int32');
    const opt = new AdamW({ weightDecay: 0 }, () => false);
    const names = adapter.paramNames;
    let first = 0;
    let last = 0;
    for (let step = 0; step < 60; step++) {
      const f = tf.valueAndGrads((...ps: tf.Tensor[]) =>
        model.loss(x, y, { training: true, dropoutSeed: step }, new Map([...model.params, ...names.map((n, i) => [n, ps[i]!] as [string, tf.Tensor])])),
      );
      const { value, grads } = tf.tidy(() => f(adapter.paramList()));
      last = value.dataSync()[0]!;
      if (step === 0) first = last;
      adapter.setParams(opt.apply(adapter.params, new Map(names.map((n, i) => [n, grads[i]!])), 2e-2));
      value.dispose();
      grads.forEach((g) => g.dispose());
    }
    expect(last).toBeLessThan(first - 0.3);
    model.paramNames.forEach((n, i) => expect(Array.from(values(model.params.get(n)!))).toEqual(Array.from(baseWeights[i]!)));
    opt.dispose();
    adapter.dispose();
    model.dispose();
  });

  it('saves only adapter weights with the base identity and config; loading onto another base is refused', async () => {
    await useBackend('cpu');
    const model = tinyModel();
    const adapter = LoraAdapter.create(model, { rank: 2, alpha: 8, targets: 'q,v,mlp_out' }, { version: 'v3', meta: { name: 'hr' } });
    randomize(adapter, 2);
    const dir = path.join(tmpRoot, 'adapter-a');
    await adapter.save(dir);
    const cfg = JSON.parse(await fs.readFile(path.join(dir, 'adapter_config.json'), 'utf8')) as Record<string, unknown>;
    expect(cfg).toMatchObject({ peft_type: 'LORA', r: 2, lora_alpha: 8, target_modules: ['q', 'v', 'mlp_out'], base: { fingerprint: modelFingerprint(model), version: 'v3' } });
    const stat = await fs.stat(path.join(dir, 'adapter.safetensors'));
    expect(stat.size).toBeLessThan(4 * adapter.numParameters + 4096); // adapter tensors only

    const x = ids();
    adapter.attach(model);
    const want = logits(model, x);
    LoraAdapter.detach(model);
    const loaded = await LoraAdapter.load(dir, model);
    loaded.attach(model);
    expect(Array.from(logits(model, x))).toEqual(Array.from(want));
    LoraAdapter.detach(model);

    const other = tinyModel(tinyConfig, 99); // same shape, other weights
    await expect(LoraAdapter.load(dir, other, 'v7')).rejects.toThrow(/trained on base model v3 \(fingerprint [0-9a-f]{12}.*loaded onto is v7.*same shape, different weights/);
    const wider = GPT.create({ ...tinyConfig, nEmbd: 16 });
    await expect(LoraAdapter.load(dir, wider)).rejects.toThrow(/2 layers × 8 wide.*2 layers × 16 wide/);
    expect(() => loaded.attach(other)).toThrow(/only works on the exact base/);
    loaded.dispose();
    adapter.dispose();
    other.dispose();
    wider.dispose();
    model.dispose();
  });

  it('serves several adapters over one base and switches without reloading it', async () => {
    await useBackend('cpu');
    const gpt = tinyModel();
    const tokenizer = CharTokenizer.fromText('abcdefghij');
    const base = new LoadedModel(gpt, tokenizer, { version: 'v1', dir: tmpRoot, numParameters: gpt.numParameters, meta: {} });
    const set = new AdapterSet(base);
    const a = LoraAdapter.create(gpt, { rank: 2, alpha: 4 });
    const b = LoraAdapter.create(gpt, { rank: 2, alpha: 4, targets: 'mlp' });
    randomize(a, 1);
    randomize(b, 2);
    const store = new AdapterStore(tmpRoot);
    await store.save('tone-a', a);
    await store.save('tone-b', b);
    expect((await store.list()).map((s) => s.name)).toEqual(['tone-a', 'tone-b']);
    await set.load('tone-a', store.dir('tone-a'));
    await set.load('tone-b', store.dir('tone-b'));
    const x = ids();
    const plain = logits(set.model(null).gpt, x);
    const la = logits(set.model('tone-a').gpt, x);
    const lb = logits(set.model('tone-b').gpt, x);
    expect(maxAbsDiff(la, plain)).toBeGreaterThan(1e-2);
    expect(maxAbsDiff(lb, la)).toBeGreaterThan(1e-2);
    a.attach(gpt);
    expect(maxAbsDiff(la, logits(gpt, x))).toBeLessThan(1e-6);
    LoraAdapter.detach(gpt);

    expect(set.serving).toBeNull();
    const served = set.use('tone-b');
    expect(served.info.version).toBe('v1+tone-b');
    expect(set.list().find((i) => i.serving)?.name).toBe('tone-b');
    expect(maxAbsDiff(logits(set.servingModel().gpt, x), lb)).toBeLessThan(1e-6);
    set.use('tone-a');
    // The view handed out earlier keeps its adapter (answers in flight are not disturbed).
    expect(maxAbsDiff(logits(served.gpt, x), lb)).toBeLessThan(1e-6);
    expect(maxAbsDiff(logits(set.servingModel().gpt, x), la)).toBeLessThan(1e-6);
    // A generation through a view works (KV cache + hook).
    const r = await set.servingModel().complete('abc', { maxTokens: 4, temperature: 0, stopAtEnd: false });
    expect(r.tokens).toHaveLength(4);
    expect(() => set.unload('tone-a')).toThrow(/is serving/);
    set.use(null);
    set.unload('tone-a');
    expect(set.names()).toEqual(['tone-b']);
    // Disposing a view frees nothing of the base.
    served.dispose();
    expect(logits(gpt, x)).toEqual(plain);
    const other = new AdapterSet(new LoadedModel(tinyModel(tinyConfig, 50), tokenizer, { version: 'v2', dir: tmpRoot, numParameters: 0, meta: {} }));
    await expect(other.load('tone-b', store.dir('tone-b'))).rejects.toThrow(/trained on base model .*loaded onto is v2/);
    other.dispose();
    set.dispose();
    a.dispose();
    b.dispose();
  });

  it('LoRA dropout applies only in training and is reproducible from the seed', async () => {
    await useBackend('cpu');
    const model = tinyModel();
    const adapter = LoraAdapter.create(model, { rank: 2, alpha: 4, dropout: 0.5 });
    randomize(adapter, 3);
    adapter.attach(model);
    const x = ids();
    const y = tf.tensor2d(randomIds(B * T, tinyConfig.vocabSize, 5), [B, T], 'int32');
    const loss = (opts: { training?: boolean; dropoutSeed?: number }) => tf.tidy(() => model.loss(x, y, opts).dataSync()[0]!);
    expect(loss({})).toBe(loss({}));
    expect(loss({ training: true, dropoutSeed: 1 })).toBe(loss({ training: true, dropoutSeed: 1 }));
    expect(loss({ training: true, dropoutSeed: 1 })).not.toBe(loss({ training: true, dropoutSeed: 2 }));
    expect(loss({ training: true, dropoutSeed: 1 })).not.toBe(loss({}));
    adapter.dispose();
    model.dispose();
  });
});
