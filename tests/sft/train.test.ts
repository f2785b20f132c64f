import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { tf, useBackend } from '../model/helpers.ts';
import { saveModelFiles, loadModelFiles } from '../../src/model/model-files.ts';
import { readSafetensors } from '../../src/model/safetensors.ts';
import { LoraAdapter } from '../../src/model/lora/index.ts';
import { sft, type SftOptions, type SftProgress } from '../../src/training/sft/train.ts';
import { generateQa, withRetrievedContext } from '../../src/training/sft/qa-generator.ts';
import { charTokenizer, tinyChatModel, HANDBOOK_EN, HANDBOOK_ZH } from './helpers.ts';

const tmpRoot = await fs.mkdtemp(path.join(os.tmpdir(), 'teamllm-sft-train-'));
afterAll(() => fs.rm(tmpRoot, { recursive: true, force: true }));

await useBackend('wasm');
const generated = generateQa([
  { source: 'en/leave.md', text: HANDBOOK_EN },
  { source: 'zh/leave.md', text: HANDBOOK_ZH },
]);
const examples = await withRetrievedContext(generated, undefined, { k: 1 });
const tok = charTokenizer(generated.map((q) => q.question + q.answer).join(''));

const baseDir = path.join(tmpRoot, 'base');
{
  const gpt = tinyChatModel(tok.vocabSize, { blockSize: 160 });
  await saveModelFiles(baseDir, gpt, tok, { source: 'test' });
  gpt.dispose();
}
const common = (runDir: string): SftOptions => ({
  runDir,
  base: baseDir,
  baseVersion: 'v1',
  examples,
  lora: { rank: 2, alpha: 4, dropout: 0.1 },
  batchSize: 4,
  maxIters: 8,
  learningRate: 1e-2,
  warmupIters: 2,
  evalInterval: 4,
  checkpointInterval: 3,
  chartInterval: 4,
  valFraction: 0.15,
  seed: 3,
});

async function adapterValues(dir: string): Promise<Record<string, number[]>> {
  const { tensors } = await readSafetensors(path.join(dir, 'adapter.safetensors'));
  return Object.fromEntries([...tensors].map(([n, a]) => [n, Array.from(a.data)]));
}

describe('SFT with LoRA', () => {
  it('trains only the adapter, reports the trainable share, validates, checkpoints and writes curves', async () => {
    const runDir = path.join(tmpRoot, 'run-a');
    const events: SftProgress[] = [];
    const lines: string[] = [];
    const r = await sft(common(runDir), { onProgress: (e) => events.push(e), log: (l) => lines.push(l) });
    expect(r.status).toBe('completed');
    expect(r.step).toBe(8);
    expect(r.examples.train + r.examples.val).toBe(examples.length);
    expect(r.trainableShare).toBeGreaterThan(0);
    expect(r.trainableShare).toBeLessThan(0.05);
    expect(r.trainableParameters).toBe(2 * 4 * (32 * 2 + 2 * 32)); // layers × (q, k, v, attn_out) × (A + B)
    expect(lines.some((l) => /trainable parameters = \d+\.\d\d% of the base/.test(l))).toBe(true);
    expect(r.valLoss).toBeLessThan(r.baseValLoss);
    expect(r.msPerEpoch).toBeGreaterThan(0);
    expect(events.filter((e) => e.phase === 'eval').map((e) => e.step)).toEqual([0, 4, 8]);
    expect(events.at(-1)!.epoch).toBeCloseTo((8 * 4) / r.examples.train, 6);
    // Only adapter tensors are saved; the merged model is a normal model folder.
    const saved = await adapterValues(r.adapterDir);
    expect(Object.keys(saved).every((n) => /\.lora_[AB]$/.test(n))).toBe(true);
    expect((await fs.readdir(r.adapterDir)).sort()).toEqual(['adapter.safetensors', 'adapter_config.json']);
    const files = await fs.readdir(runDir);
    for (const f of ['loss.png', 'metrics.jsonl', 'run.json', 'adapter', 'model', 'checkpoints', 'data']) expect(files).toContain(f);
    const metrics = (await fs.readFile(path.join(runDir, 'metrics.jsonl'), 'utf8')).trim().split('\n').map((l) => JSON.parse(l) as Record<string, number>);
    expect(metrics.filter((m) => 'loss' in m)).toHaveLength(8);
    // merged == base + adapter.
    const { model: base } = await loadModelFiles(baseDir);
    const { model: merged, config } = await loadModelFiles(r.modelDir!);
    expect(config.meta).toMatchObject({ source: 'sft', parent: 'v1' });
    const adapter = await LoraAdapter.load(r.adapterDir, base, 'v1');
    adapter.attach(base);
    const x = tf.tensor2d([Array.from({ length: 20 }, (_, i) => (i * 7) % tok.vocabSize)], [1, 20], 'int32');
    const a = tf.tidy(() => Array.from(base.forward(x).dataSync()));
    const b = tf.tidy(() => Array.from(merged.forward(x).dataSync()));
    expect(Math.max(...a.map((v, i) => Math.abs(v - b[i]!)))).toBeLessThan(1e-4);
    adapter.dispose();
    base.dispose();
    merged.dispose();
  });

  it('resumes exactly: stopped at step 3 and resumed == never interrupted', async () => {
    const whole = await sft({ ...common(path.join(tmpRoot, 'run-whole')), saveMerged: false });
    const runDir = path.join(tmpRoot, 'run-split');
    const controller = new AbortController();
    const first = await sft({ ...common(runDir), saveMerged: false }, { signal: controller.signal, onProgress: (e) => e.phase === 'train' && e.step === 3 && controller.abort() });
    expect(first.status).toBe('aborted');
    expect(first.step).toBe(3);
    const second = await sft({ ...common(runDir), examples: [], saveMerged: false });
    expect(second.resumedFrom).toBe(3);
    expect(second.step).toBe(8);
    expect(second.valLoss).toBe(whole.valLoss);
    expect(await adapterValues(second.adapterDir)).toEqual(await adapterValues(whole.adapterDir));
    const losses = async (dir: string) =>
      (await fs.readFile(path.join(dir, 'metrics.jsonl'), 'utf8'))
        .trim()
        .split('\n')
        .map((l) => JSON.parse(l) as { loss?: number })
        .filter((m) => m.loss !== undefined)
        .map((m) => m.loss);
    expect(await losses(runDir)).toEqual(await losses(path.join(tmpRoot, 'run-whole')));
  });

  it('refuses to resume onto a different base model', async () => {
    const runDir = path.join(tmpRoot, 'run-c');
    const controller = new AbortController();
    await sft({ ...common(runDir), maxIters: 4 }, { signal: controller.signal, onProgress: (e) => e.phase === 'train' && e.step === 1 && controller.abort() });
    const otherBase = path.join(tmpRoot, 'other-base');
    const gpt = tinyChatModel(tok.vocabSize, { blockSize: 160 }, 99);
    await saveModelFiles(otherBase, gpt, tok);
    gpt.dispose();
    await expect(sft({ ...common(runDir), base: otherBase, baseVersion: 'v9' })).rejects.toThrow(/trained on base model v1 .*loaded onto is v9/);
  });
});
