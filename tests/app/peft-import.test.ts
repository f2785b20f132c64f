/**
 * `teamllm model import <peft-adapter-folder> --base <version>` through the real CLI: a PEFT
 * LoRA folder goes onto an imported chat model as a version of its own (refused without --base,
 * onto a model of another shape, or onto something that is not an imported chat model); it
 * verifies, is promoted, and loads as the base with the adapter merged, giving the logits of the
 * trainable model with the adapter unmerged; exported as PEFT's files and as a merged Hugging Face
 * folder that imports back to the same logits.
 */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import * as tf from '@tensorflow/tfjs-core';
import { teamllm } from './import-cli.ts';
import { initBackend } from '../../src/model/backend.ts';
import { Random } from '../../src/model/random.ts';
import { loadChatModelVersion } from '../../src/model/import/chat-manifest.ts';
import { LlamaModel } from '../../src/model/import/llama.ts';
import { LoraAdapter } from '../../src/model/lora/adapter.ts';
import { writePeftAdapter } from '../../src/model/lora/peft.ts';
import { trainableFromChatModel } from '../../src/model/lora/imported-base.ts';
import { tinyChatModel, writeHfChatFolder } from '../model/import/tiny-llama.ts';

describe('teamllm model import of a PEFT adapter', () => {
  it('registers it over its imported base, refuses a wrong base, and serves the merged model', { timeout: 120_000 }, async () => {
    const home = mkdtempSync(join(tmpdir(), 'teamllm-peft-import-'));
    try {
      await initBackend('cpu', { log: () => {} });
      const qwen = tinyChatModel('qwen3', 4);
      writeHfChatFolder(join(home, 'dl', 'qwen3'), qwen);
      writeHfChatFolder(join(home, 'dl', 'llama'), tinyChatModel('llama', 4));
      expect((await teamllm(home, ['model', 'import', join(home, 'dl', 'qwen3')])).code).toBe(0);
      expect((await teamllm(home, ['model', 'import', join(home, 'dl', 'llama')])).code).toBe(0);

      // An adapter trained elsewhere: random B so that it changes the answers.
      const model = trainableFromChatModel(new LlamaModel(qwen.config, qwen.weights));
      const adapter = LoraAdapter.create(model, { rank: 4, alpha: 8, targets: 'q_proj,v_proj,down_proj' });
      const rng = new Random(2);
      adapter.setParams(new Map(adapter.paramNames.map((n) => [n, tf.keep(tf.tensor(rng.normalArray(adapter.params.get(n)!.size, 0.1), adapter.params.get(n)!.shape))] as [string, tf.Tensor])));
      const folder = join(home, 'dl', 'my-lora');
      await writePeftAdapter(folder, adapter, { baseModel: 'tiny-qwen3' });

      const noBase = await teamllm(home, ['model', 'import', folder]);
      expect(noBase.code).toBe(1);
      expect(noBase.stderr).toMatch(/is a LoRA adapter: name the imported model it goes on with --base <version> \(imported chat models: v1, v2\)/);
      const wrong = await teamllm(home, ['model', 'import', folder, '--base', 'v2']);
      expect(wrong.code).toBe(1);
      expect(wrong.stderr).toMatch(/this base's projection needs .*it was trained on another model/);
      const imported = await teamllm(home, ['model', 'import', folder, '--base', 'v1', '--name', 'my-lora']);
      expect(imported.code, imported.stderr).toBe(0);
      expect(imported.stdout).toContain('Imported v3 "my-lora": a LoRA adapter (r=4, alpha=8, on q, v, mlp_out) over v1 (trained on tiny-qwen3).');
      const onAdapter = await teamllm(home, ['model', 'import', folder, '--base', 'v3']);
      expect(onAdapter.stderr).toMatch(/v3 is itself an adapter|not an imported chat model/);

      const registry = JSON.parse(readFileSync(join(home, 'models', 'registry.json'), 'utf8')) as { versions: Record<string, Record<string, unknown>> };
      expect(registry.versions.v3).toMatchObject({ kind: 'chat', parent: 'v1', architecture: 'Qwen3ForCausalLM', name: 'my-lora' });
      expect(Object.keys(registry.versions.v3!.files as object).sort()).toEqual(['adapter_config.json', 'adapter_model.safetensors', 'chat-model.json']);
      expect((await teamllm(home, ['model', 'verify'])).code).toBe(0);
      const promoted = await teamllm(home, ['model', 'promote', 'v3']);
      expect(promoted.code, promoted.stderr).toBe(0);
      expect(promoted.stdout).toMatch(/^Now answering with v3/);

      const ids = [5, 17, 99, 3, 250, 42];
      adapter.attach(model);
      const unmerged = tf.tidy(() => model.forward(tf.tensor2d(ids, [1, ids.length], 'int32')).dataSync() as Float32Array);
      const served = loadChatModelVersion(join(home, 'models', 'v3'));
      expect(served.manifest.adapter).toEqual({ base: 'v1' });
      const logits = served.model.forward(ids);
      let diff = 0;
      for (let i = 0; i < logits.length; i++) diff = Math.max(diff, Math.abs(logits[i]! - unmerged[i]!));
      expect(diff).toBeLessThan(1e-4);
      const base = loadChatModelVersion(join(home, 'models', 'v1')).model.forward(ids);
      expect(Math.max(...base.map((v, i) => Math.abs(v - logits[i]!)))).toBeGreaterThan(1e-3);

      // Exported: the adapter alone in PEFT's files (byte for byte what was imported), and the base
      // with the adapter merged as a Hugging Face folder that imports back to the served logits.
      const peftOut = join(home, 'exports', 'peft');
      const peft = await teamllm(home, ['model', 'export', 'v3', '--format', 'peft', peftOut]);
      expect(peft.code, peft.stderr).toBe(0);
      expect(peft.stdout).toMatch(/as PEFT's LoRA adapter folder .*adapter_config\.json, adapter_model\.safetensors/);
      for (const f of ['adapter_config.json', 'adapter_model.safetensors']) expect(readFileSync(join(peftOut, f)).equals(readFileSync(join(folder, f)))).toBe(true);
      const hf = await teamllm(home, ['model', 'export', 'v3', '--format', 'hf', join(home, 'exports', 'merged')]);
      expect(hf.code, hf.stderr).toBe(0);
      expect((await teamllm(home, ['model', 'import', join(home, 'exports', 'merged')])).code).toBe(0);
      const reimported = loadChatModelVersion(join(home, 'models', 'v4')).model.forward(ids);
      expect(Math.max(...reimported.map((v, i) => Math.abs(v - logits[i]!)))).toBeLessThan(1e-5);
      // A whole model is not an adapter.
      const whole = await teamllm(home, ['model', 'export', 'v1', '--format', 'peft', join(home, 'exports', 'no')]);
      expect(whole.code).toBe(1);
      expect(whole.stderr).toMatch(/--format peft writes a LoRA adapter version/);
      adapter.dispose();
      model.dispose();
    } finally {
      rmSync(home, { recursive: true, force: true });
    }
  });
});
