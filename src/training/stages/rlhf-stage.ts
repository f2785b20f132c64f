import { existsSync } from 'node:fs';
import { join } from 'node:path';
import type { RunStage } from '../jobs/stage.ts';
import { parseStageParamsWith } from './stage-params.ts';
import { RlhfJobParamsSchema, runRlhfJob } from '../rlhf/pipeline.ts';

/**
 * `/train rlhf algo=ppo|kto|dpo [base=v3] [reward=name] [steps=20] [maxKl=2] ...`
 * (`teamllm train rlhf --algo kto`): improves the serving model from the users' 👍/👎 — PPO against
 * the reward model, or KTO / DPO straight from the votes — and promotes the result only when the
 * gate passes (reward up, KL under the bound, QA not worse); the report says why otherwise.
 */
export const runStage: RunStage = async (ctx) => {
  const { params, home, runDir, resume, signal, progress, log } = ctx;
  parseStageParamsWith('rlhf', params, RlhfJobParamsSchema);
  if (resume && !existsSync(join(runDir, 'checkpoints'))) log('resume: no RLHF checkpoint in this run yet; training from the start');
  const r = await runRlhfJob(params, {
    home,
    store: ctx.store,
    knowledgeBases: ctx.knowledgeBases,
    runDir,
    signal,
    log,
    progress: (ev) => progress({ stage: ev.stage, step: ev.step, totalSteps: ev.totalSteps, ...(ev.loss !== undefined && Number.isFinite(ev.loss) ? { loss: ev.loss } : {}) }),
  });
  const metrics: Record<string, number> = {
    steps: r.steps,
    wallSec: r.wallSec,
    rewardBefore: r.before.reward,
    rewardAfter: r.after.reward,
    klAfter: r.after.kl,
    entropyBefore: r.before.entropy,
    entropyAfter: r.after.entropy,
  };
  if (r.before.qa && r.after.qa) Object.assign(metrics, { qaF1Before: r.before.qa.f1, qaF1After: r.after.qa.f1, containsGoldBefore: r.before.qa.containsGold, containsGoldAfter: r.after.qa.containsGold });
  return {
    summary: r.summary,
    metrics,
    files: { lossChart: r.files.chart, report: r.files.report, adapter: r.files.adapter },
    ...(r.modelVersion ? { modelVersion: r.modelVersion } : {}),
    gate: r.gate,
  };
};
