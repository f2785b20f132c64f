/**
 * What an RLHF run leaves behind: its chart (rlhf.png), and for a completed run the adapter, the
 * merged model and its registry entry. Promotion is the job runner's (src/app/job-promotion.ts:
 * gate passed, trained from the serving model, promote not 'never').
 */
import path from 'node:path';
import type { GPT } from '../../model/gpt.ts';
import { ModelRegistry } from '../../model/registry.ts';
import { saveModelFiles } from '../../model/model-files.ts';
import { writeDirAtomic } from '../../model/files.ts';
import type { LoraAdapter } from '../../model/lora/adapter.ts';
import { writePeftAdapter } from '../../model/lora/peft.ts';
import type { Tokenizer } from '../../model/tokenizer/index.ts';
import { writePanels, type Panel } from './chart.ts';
import type { RlhfMeasure } from './gate.ts';
import type { RlhfAlgo } from './job-spec.ts';
import type { RlhfCheckpointExtra } from './train-policy.ts';

type Base = { dir: string; version?: string };

/** Writes rlhf.png: training curves, held-out measures against the start and the KL bound, QA before and after. */
export async function writeRlhfChart(o: {
  runDir: string;
  algo: RlhfAlgo;
  base: Base;
  maxKl: number;
  steps: number;
  before: RlhfMeasure;
  after: RlhfMeasure;
  curves: RlhfCheckpointExtra['curves'];
  evals: RlhfCheckpointExtra['evals'];
}): Promise<string> {
  const { runDir, algo, base, maxKl, steps, before, after, curves, evals } = o;
  const qaPoints = (key: 'f1' | 'containsGold') => [before.qa, after.qa].flatMap((q, i) => (q ? [{ step: i === 0 ? 0 : steps, value: q[key] }] : []));
  const panels: Panel[] = [
    { title: algo === 'ppo' ? 'REWARD' : 'IMPLICIT REWARD MARGIN', line: curves.reward },
    { title: before.rewardKind === 'reward-model' ? 'HELD-OUT REWARD' : 'HELD-OUT MARGIN', dots: evals.reward, ref: { value: before.reward, label: 'BEFORE' } },
    { title: 'KL TO REFERENCE', line: curves.kl, dots: evals.kl, ref: { value: maxKl, label: 'BOUND' } },
    { title: 'ENTROPY', line: curves.entropy, dots: evals.entropy },
    { title: algo === 'ppo' ? 'PPO LOSS' : `${algo.toUpperCase()} LOSS`, line: curves.loss },
    { title: 'QA F1 / CONTAINS', dots: qaPoints('f1'), line: qaPoints('containsGold') },
  ];
  const chartFile = path.join(runDir, 'rlhf.png');
  await writePanels(chartFile, `RLHF ${algo.toUpperCase()} ${base.version ?? path.basename(base.dir)}`, panels);
  return chartFile;
}

/**
 * An imported chat model's adapter in PEFT's format, in `<runDir>/adapter/` (the QA check merges
 * it into the engine to answer; the saved result is written here again with its metrics).
 */
export async function writeRlhfPeftAdapter(runDir: string, adapter: LoraAdapter, baseModel: string | null): Promise<string> {
  const adapterDir = path.join(runDir, 'adapter');
  await writeDirAtomic(adapterDir, (tmp) => writePeftAdapter(tmp, adapter, { baseModel }));
  return adapterDir;
}

/**
 * Saves the run's adapter and registers it; answers its version. Over a model trained here:
 * adapter/ and model/ (merged), a teamllm version. Over an imported chat model (`chat`): adapter/
 * in PEFT's format, registered as a version over its base (as the SFT job does), served merged.
 */
export async function saveRlhfModel(o: {
  home: string;
  runDir: string;
  algo: RlhfAlgo;
  base: Base;
  steps: number;
  adapter: LoraAdapter;
  gpt: GPT;
  tokenizer?: Tokenizer;
  chat?: { baseModel: string | null };
  before: RlhfMeasure;
  after: RlhfMeasure;
  gate: { passed: boolean; reasons: string[] };
}): Promise<string> {
  const { home, runDir, algo, base, steps, adapter, gpt, tokenizer, before, after, gate } = o;
  const adapterDir = path.join(runDir, 'adapter');
  const m = (x: RlhfMeasure, pre: string) => ({ [`${pre}Reward`]: x.reward, [`${pre}Kl`]: x.kl, [`${pre}Entropy`]: x.entropy, ...(x.qa ? { [`${pre}QaF1`]: x.qa.f1, [`${pre}QaContainsGold`]: x.qa.containsGold } : {}) });
  const metricsOut: Record<string, number> = { ...m(after, 'rlhf'), ...m(before, 'base') };
  adapter.meta = { ...adapter.meta, algo: algo, steps, trainedAt: new Date().toISOString(), metrics: metricsOut, gate };
  if (o.chat) {
    if (!base.version) throw new Error('an imported chat model is tuned by its version');
    await writeRlhfPeftAdapter(runDir, adapter, o.chat.baseModel);
    const registered = await new ModelRegistry(home).registerChatAdapter(adapterDir, base.version, { source: 'rlhf', metrics: metricsOut, gate, onAdapter: 'combine', notes: `${algo.toUpperCase()} LoRA adapter ${adapterDir}` });
    return registered.version;
  }
  if (!tokenizer) throw new Error('saving a teamllm model needs its tokenizer');
  await writeDirAtomic(adapterDir, (tmp) => adapter.save(tmp));
  const merged = adapter.mergedModel(gpt);
  const modelDir = path.join(runDir, 'model');
  await writeDirAtomic(modelDir, (tmp) => saveModelFiles(tmp, merged, tokenizer, { source: 'rlhf', algo: algo, parent: base.version ?? null, base: base.dir, adapter: adapterDir, metrics: metricsOut, gate, trainedAt: new Date().toISOString() }));
  merged.dispose();
  const registry = new ModelRegistry(home);
  const registered = await registry.register(modelDir, { source: 'rlhf', metrics: metricsOut, ...(base.version ? { parent: base.version } : {}), notes: `${algo.toUpperCase()} LoRA adapter ${adapterDir}` });
  const modelVersion = registered.version;
  await registry.annotate(modelVersion, { gate });
  return modelVersion;
}
