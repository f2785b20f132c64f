/**
 * `npm run bench -- lora-serve --home <TEAMLLM_HOME> --version v2 [--tokens 64] [--runs 3]`: how a
 * fine-tuned (LoRA) version of the registry is served — tokens/s served as the bot serves it
 * (ServedModels: parent base + adapter merged in memory), from its merged folder on disk, and as
 * an unmerged AdapterSet view (projection hook); load times; switching to the base and back.
 */
import path from 'node:path';
import { parseArgs } from 'node:util';
import * as tf from '@tensorflow/tfjs-core';
import { ModelRegistry } from '../src/model/registry.ts';
import { LoadedModel } from '../src/model/loaded-model.ts';
import { AdapterSet, ServedModels, versionAdapterDir } from '../src/model/lora/index.ts';
import { generateAll } from '../src/model/generate.ts';

export async function run(argv: string[]): Promise<void> {
  const { values } = parseArgs({ args: argv, options: { home: { type: 'string' }, version: { type: 'string' }, tokens: { type: 'string', default: '64' }, runs: { type: 'string', default: '3' } } });
  if (!values.home || !values.version) throw new Error('usage: npm run bench -- lora-serve --home <TEAMLLM_HOME> --version <fine-tuned version>');
  const registry = new ModelRegistry(path.resolve(values.home));
  const version = values.version;
  const entry = await registry.get(version);
  if (!entry?.parent) throw new Error(`${version} is not a fine-tuned version with a parent in ${registry.root}`);
  const served = new ServedModels(registry);
  let t = performance.now();
  const s = await served.activate(version);
  const loadServedMs = performance.now() - t;
  if (!s?.adapter) throw new Error(`${version} has no adapter to serve over ${entry.parent} (models/${version}/adapter)`);
  t = performance.now();
  const merged = await LoadedModel.load(registry.dir(version), version);
  const loadMergedMs = performance.now() - t;
  t = performance.now();
  await served.activate(entry.parent);
  await served.activate(version);
  const switchMs = performance.now() - t;
  const set = new AdapterSet(await LoadedModel.load(registry.dir(entry.parent), entry.parent));
  await set.load(version, versionAdapterDir(registry, version));
  const prompt = merged.tokenizer.encode('<|user|>How many days of annual leave do I get?<|end|><|assistant|>');
  const maxTokens = Number(values.tokens);
  const speed = async (m: LoadedModel) => {
    await generateAll(m.gpt, m.tokenizer, prompt, { maxTokens: 8, temperature: 0 });
    let n = 0;
    const start = performance.now();
    for (let i = 0; i < Number(values.runs); i++) n += (await generateAll(m.gpt, m.tokenizer, prompt, { maxTokens, temperature: 0, stopAtEnd: false })).tokens.length;
    return (n / (performance.now() - start)) * 1000;
  };
  const servedTps = await speed(served.serving!.model);
  const mergedTps = await speed(merged);
  const viewTps = await speed(set.model(version));
  process.stdout.write(
    `backend=${tf.getBackend()} served_tokens_per_s=${servedTps.toFixed(1)} merged_folder_tokens_per_s=${mergedTps.toFixed(1)} unmerged_view_tokens_per_s=${viewTps.toFixed(1)} load_served_ms=${loadServedMs.toFixed(0)} load_merged_ms=${loadMergedMs.toFixed(0)} switch_to_base_and_back_ms=${switchMs.toFixed(0)} base_reads=${served.loads}\n`,
  );
  set.dispose();
  merged.dispose();
  served.close();
}
