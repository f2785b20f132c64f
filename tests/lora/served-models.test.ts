import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it, onTestFinished, vi } from 'vitest';
import { tf, useBackend, tinyModel, tinyConfig, randomIds } from '../model/helpers.ts';
import { GPT } from '../../src/model/gpt.ts';
import { Random } from '../../src/model/random.ts';
import { CharTokenizer } from '../../src/model/tokenizer/index.ts';
import { saveModelFiles } from '../../src/model/model-files.ts';
import { ModelRegistry } from '../../src/model/registry.ts';
import { LoraAdapter, ServedModels, attachAdapterToVersion } from '../../src/model/lora/index.ts';
import { RegistryModelService } from '../../src/app/model-service.ts';
import type { LoadedModel } from '../../src/model/loaded-model.ts';
import { silentLogger, type Answerer, type Bot, type BotStore } from '../../src/core/index.ts';

const tmpRoot = await fs.mkdtemp(path.join(os.tmpdir(), 'teamllm-served-'));
afterAll(() => fs.rm(tmpRoot, { recursive: true, force: true }));

const tokenizer = CharTokenizer.fromText('abcdefghij');
const config = { ...tinyConfig, vocabSize: tokenizer.vocabSize };
const x = () => tf.tensor2d(randomIds(2 * config.blockSize, config.vocabSize, 3), [2, config.blockSize], 'int32');
const logits = (gpt: GPT) => tf.tidy(() => Float32Array.from(gpt.forward(x()).dataSync() as Float32Array));
const WTE = 'transformer.wte.weight';
const maxDiff = (a: Float32Array, b: Float32Array) => a.reduce((m, v, i) => Math.max(m, Math.abs(v - b[i]!)), 0);

function randomize(adapter: LoraAdapter, seed: number): void {
  const rng = new Random(seed);
  adapter.setParams(new Map(adapter.paramNames.map((n) => { const p = adapter.params.get(n)!; return [n, tf.keep(tf.tensor(rng.normalArray(p.size, 0.3), p.shape))]; })));
}

/**
 * A home with a base v1 and LoRA versions registered the way the SFT job registers them (merged
 * weights + the adapter kept with the version). Returns the merged logits of each version.
 */
async function homeWithVersions(name: string): Promise<{ home: string; registry: ModelRegistry; expected: Record<string, Float32Array> }> {
  const home = path.join(tmpRoot, name);
  const registry = new ModelRegistry(home);
  const base = tinyModel(config, 7);
  await saveModelFiles(path.join(home, 'b'), base, tokenizer);
  await registry.register(path.join(home, 'b'), { source: 'pretrain' });
  const expected: Record<string, Float32Array> = { v1: logits(base) };
  for (const [i, targets] of (['attention', 'mlp'] as const).entries()) {
    const adapter = LoraAdapter.create(base, { rank: 2, alpha: 4, targets }, { version: 'v1' });
    randomize(adapter, 10 + i);
    const merged = adapter.mergedModel(base);
    const dir = path.join(home, `sft-${i}`);
    await saveModelFiles(path.join(dir, 'model'), merged, tokenizer, { source: 'sft' });
    await adapter.save(path.join(dir, 'adapter'));
    const v = await registry.register(path.join(dir, 'model'), { source: 'sft', parent: 'v1' });
    await attachAdapterToVersion(registry, v.version, path.join(dir, 'adapter'));
    expected[v.version] = logits(merged);
    adapter.dispose();
    for (const [n, t] of merged.params) if (t !== base.params.get(n)) t.dispose();
  }
  base.dispose();
  return { home, registry, expected };
}

describe('serving LoRA versions over one base', () => {
  it('switches among the adapters of one base without reading the base again, with the merged logits', async () => {
    await useBackend('cpu');
    const { registry, expected } = await homeWithVersions('switch');
    // The disposal timers run on a fake clock, moved by hand: "before the delay" and "after it" do
    // not depend on how fast the machine does a promotion's own work.
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout'] });
    onTestFinished(() => void vi.useRealTimers());
    const delay = 500;
    const served = new ServedModels(registry, { disposeAfterMs: delay });
    const v1 = (await served.activate('v1'))!;
    expect(v1).toMatchObject({ version: 'v1', adapter: false, reloaded: true });
    expect(maxDiff(logits(v1.model.gpt), expected.v1!)).toBeLessThan(1e-6);
    for (const version of ['v2', 'v3', 'v2', 'v1', 'v3']) {
      const s = (await served.activate(version))!;
      expect(s).toMatchObject({ version, base: 'v1', reloaded: false, adapter: version !== 'v1' });
      expect(s.model.info.version).toBe(version);
      // Merged in memory: hook-free (the fused native path serves it), only the targeted projections copied.
      expect(s.model.gpt.projectionHook).toBeUndefined();
      expect(s.model.gpt.params.get(WTE)).toBe(v1.model.gpt.params.get(WTE));
      expect(maxDiff(logits(s.model.gpt), expected[version]!)).toBeLessThan(1e-4);
    }
    expect(served.loads).toBe(1);
    expect(served.loadedAdapters().sort()).toEqual(['v2', 'v3']);
    // v2 stopped serving: its merged copy is freed after the delay; v3's (serving) stays usable.
    vi.advanceTimersByTime(delay);
    const v3 = served.serving!;
    expect(maxDiff(logits(v3.model.gpt), expected.v3!)).toBeLessThan(1e-4);
    // Nothing serving: the base is freed after the delay; promoted again before that, it is taken back.
    await served.activate(null);
    expect((await served.activate('v2'))!.reloaded).toBe(false);
    await served.activate(null);
    vi.advanceTimersByTime(delay);
    expect((await served.activate('v2'))!.reloaded).toBe(true);
    expect(served.loads).toBe(2);
    served.close();
  });

  it('falls back to the merged weights when the adapter does not fit the parent, or the parent is gone', async () => {
    await useBackend('cpu');
    const { registry, expected } = await homeWithVersions('fallback');
    // v4: an adapter trained on some other base, registered as if from v1.
    const other = tinyModel(config, 99);
    const stray = LoraAdapter.create(other, { rank: 2, alpha: 4 }, { version: 'elsewhere' });
    randomize(stray, 5);
    const merged = stray.mergedModel(other);
    await saveModelFiles(path.join(tmpRoot, 'stray', 'model'), merged, tokenizer);
    await stray.save(path.join(tmpRoot, 'stray', 'adapter'));
    const v4 = await registry.register(path.join(tmpRoot, 'stray', 'model'), { source: 'sft', parent: 'v1' });
    await attachAdapterToVersion(registry, v4.version, path.join(tmpRoot, 'stray', 'adapter'));
    const mergedLogits = logits(merged);
    const logs: string[] = [];
    const served = new ServedModels(registry, { disposeAfterMs: 10, log: (m) => logs.push(m) });
    const s = await served.load('v4');
    expect(s).toMatchObject({ version: 'v4', base: 'v4', adapter: false });
    expect(maxDiff(logits(s.model.gpt), mergedLogits)).toBeLessThan(1e-6);
    expect(logs.join('\n')).toMatch(/v4 cannot be served as an adapter over v1; loading its merged weights/);
    // The parent removed: v2 is served from its own merged weights.
    await registry.remove('v1');
    const v2 = await served.load('v2');
    expect(v2).toMatchObject({ base: 'v2', adapter: false });
    expect(maxDiff(logits(v2.model.gpt), expected.v2!)).toBeLessThan(1e-4);
    await expect(served.load('v9')).rejects.toThrow(/No model version v9/);
    served.close();
    stray.dispose();
    other.dispose();
  });

  it('/model promote and rollback among LoRA versions swap the answerer without reloading the base', async () => {
    await useBackend('cpu');
    const { registry } = await homeWithVersions('service');
    const models: LoadedModel[] = [];
    let answerer: Answerer | undefined;
    const bot = { setAnswerer: (a: Answerer) => (answerer = a), get serving() { return answerer; } } as unknown as Bot;
    const audits: unknown[] = [];
    const store = { audit: async (e: unknown) => void audits.push(e) } as unknown as BotStore;
    const fallback = { model: { name: 'retrieval-only' } } as unknown as Answerer;
    const service = new RegistryModelService({
      registry,
      store,
      logger: silentLogger,
      fallback,
      disposeAfterMs: 10,
      answererFor: (model) => {
        models.push(model);
        return { model: { name: model.info.version } } as unknown as Answerer;
      },
    });
    service.attach(bot);
    const admin = { id: 'console:admin', isAdmin: true };
    await service.promote('v1', admin);
    await service.promote('v2', admin);
    await service.promote('v3', admin);
    await service.rollback(admin);
    expect(models.map((m) => m.info.version)).toEqual(['v1', 'v2', 'v3', 'v2']);
    expect(new Set(models.map((m) => m.gpt.params.get(WTE))).size).toBe(1);
    expect((await registry.serving())!.version).toBe('v2');
    expect(audits).toHaveLength(4);
    // A metric a job could not measure is stored as null (JSON has no NaN): /model list says n/a, never crashes.
    await registry.annotate('v3', { metrics: { pairAccuracy: Number.NaN, voteAuc: 0.5 } });
    expect((await registry.get('v3'))!.metrics.pairAccuracy).toBeNull();
    expect(await service.list()).toMatch(/v3 .*pairAccuracy n\/a, voteAuc 0\.500/);
    service.close();
  });
});
