import { join } from 'node:path';
import { z } from 'zod';
import { ModelRegistry } from '../../model/registry.ts';
import type { RunStage } from '../jobs/stage.ts';
import { PRETRAIN_PRESETS, pretrain, type PretrainOptions } from '../pretrain.ts';
import { defaultCorpus } from './default-corpus.ts';
import { int, num, parseStageParams } from './stage-params.ts';

/**
 * `/train pretrain [preset=...] [data=...] [maxIters=...]`: a language model from zero on the
 * company's text. The result is registered as a new version but not promoted: an admin compares
 * it with the serving one (/model list) and promotes it.
 */
export const runStage: RunStage = async ({ params, home, runDir, signal, progress, log }) => {
  const p = parseStageParams('pretrain', params, {
    preset: z.enum(Object.keys(PRETRAIN_PRESETS) as [string, ...string[]]).optional(),
    data: z.string().optional(),
    modelSize: z.string().optional(),
    /** Context length and dropout on top of the named size (e.g. blockSize=256 for retrieved passages). */
    blockSize: int().optional(),
    dropout: num().optional(),
    tokenizer: z.string().optional(),
    tokenizerVocabSize: int().optional(),
    warmupIters: int().optional(),
    evalIters: int().optional(),
    seed: int().optional(),
    maxIters: int().optional(),
    batchSize: int().optional(),
    learningRate: num().optional(),
    evalInterval: int().optional(),
    checkpointInterval: int().optional(),
    backend: z.string().optional(),
  });
  const { preset, data, blockSize, dropout, ...overrides } = p;
  const presetOptions = preset ? PRETRAIN_PRESETS[preset] : {};
  const shape = { ...(blockSize !== undefined ? { blockSize } : {}), ...(dropout !== undefined ? { dropout } : {}) };
  const options: PretrainOptions = {
    ...presetOptions,
    ...Object.fromEntries(Object.entries(overrides).filter(([, v]) => v !== undefined)),
    ...(Object.keys(shape).length ? { model: { ...presetOptions?.model, ...shape } } : {}),
    runDir,
    data: data ? data.split(',') : defaultCorpus(home),
    resume: true,
  };
  const result = await pretrain(options, {
    signal,
    log,
    onProgress: (ev) =>
      progress({
        stage: ev.phase === 'eval' ? 'evaluate' : 'pretrain',
        step: ev.step,
        totalSteps: ev.totalSteps,
        loss: ev.loss,
        ...(ev.valLoss !== undefined ? { valLoss: ev.valLoss } : {}),
        tokensPerSec: ev.tokensPerSec,
        etaSec: ev.etaSec,
      }),
  });
  const metrics = {
    valLoss: result.valLoss,
    perplexity: result.perplexity,
    trainLoss: result.trainLoss,
    steps: result.step,
    msPerIter: result.msPerIter,
    // The checkpoint step this run continued from (a resumed job: /train resume, or another process's takeover).
    ...(result.resumedFrom !== undefined ? { resumedFrom: result.resumedFrom } : {}),
  };
  const files = { lossChart: join(runDir, 'loss.png') };
  if (result.status === 'aborted') return { summary: `stopped at step ${result.step} (val loss ${result.valLoss.toFixed(3)})`, metrics, files };
  const version = await new ModelRegistry(home).register(result.modelDir, { source: 'pretrain', metrics });
  return {
    summary: `New model ${version.version}: val loss ${result.valLoss.toFixed(3)} (perplexity ${result.perplexity.toFixed(1)}), ${result.numParameters.toLocaleString('en-US')} parameters, ${result.tokensPerSec.toFixed(0)} tokens/s. Promote it with /model promote ${version.version}.`,
    metrics,
    files,
    modelVersion: version.version,
  };
};
