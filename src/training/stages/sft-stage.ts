import { join } from 'node:path';
import type { RunStage } from '../jobs/stage.ts';
import { parseStageParamsWith } from './stage-params.ts';
import { runSftJob, sftJobProgress, SftJobParamsSchema } from '../sft/pipeline.ts';

/**
 * `/train sft [base=v3] [data=file.jsonl,...] [docs=folder,...] [questions=file.jsonl] [rank=8]
 * [alpha=16] [targets=q,k,v,attn_out] [epochs=3] ...`: a LoRA adapter on the base model, trained on
 * the given SFT data plus question/answer examples generated from the documents, evaluated on the
 * held-out questions before and after. Only an adapter that beats its base is registered; the
 * comparison is the evaluation gate, and the job runner's one promotion rule (src/app/job-promotion.ts)
 * promotes it when the gate passed and its base is serving — the pipeline itself promotes nothing here.
 */
export const runStage: RunStage = async (ctx) => {
  const { params, home, runDir, signal, progress, log } = ctx;
  parseStageParamsWith('sft', params, SftJobParamsSchema);
  const result = await runSftJob({ ...params, promote: 'never' }, {
    home,
    knowledgeBases: ctx.knowledgeBases,
    runDir,
    signal,
    log,
    progress: (ev) => progress(sftJobProgress(ev)),
  });
  const t = result.training;
  const metrics: Record<string, number> = {
    trainableShare: t.trainableShare,
    trainableParameters: t.trainableParameters,
    valLoss: t.valLoss,
    baseValLoss: t.baseValLoss,
    steps: t.step,
    secPerEpoch: t.msPerEpoch / 1000,
  };
  if (result.before) Object.assign(metrics, { baseExactMatch: result.before.exactMatch, baseF1: result.before.f1, baseContainsGold: result.before.containsGold });
  if (result.after) Object.assign(metrics, { exactMatch: result.after.exactMatch, f1: result.after.f1, containsGold: result.after.containsGold });
  const gate = result.comparison
    ? { passed: result.comparison.improved && result.modelVersion !== undefined, reasons: [result.comparison.verdict] }
    : { passed: false, reasons: ['not evaluated: no held-out questions'] };
  return {
    summary: result.summary.replace(/; promote it with \/model promote v\d+/, ''),
    gate,
    metrics,
    files: { lossChart: join(runDir, 'loss.png'), report: join(runDir, 'report.txt'), adapter: t.adapterDir },
    ...(result.modelVersion ? { modelVersion: result.modelVersion } : {}),
  };
};
