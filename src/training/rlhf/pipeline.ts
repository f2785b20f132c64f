/**
 * The whole RLHF job (`teamllm train rlhf --algo ppo|kto|dpo`, `/train rlhf algo=kto`):
 *
 * 1. the policy to improve: a registry version (default: the serving one, else the newest), with
 *    a fresh LoRA adapter; the same model without the adapter is the frozen reference. An imported
 *    chat model trains on its engine's own matrices, frozen in the dtype they are served in, with
 *    its own chat template's episodes, and its adapter is registered in PEFT's format as a version
 *    over it (job-inputs.ts loadPolicy); over an adapter version, the two adapters as one over the
 *    imported model;
 * 2. the data from the feedback store, split by question (the reward model's split): prompts for
 *    PPO, 👍/👎 for KTO, liked/disliked pairs for DPO;
 * 3. the reward model (`teamllm train reward`): required by PPO; for KTO and DPO it is used to
 *    measure the policy when there is one, otherwise the held-out implicit reward is the measure;
 * 4. before and after: reward on held-out prompts, KL to the reference, entropy, and the QA
 *    evaluation (retrieval in the loop) of the SFT issue;
 * 5. the gate (`rlhfGate`): the new policy is promoted only if its reward rises, its KL stays under
 *    `maxKl`, the users' own held-out votes do not turn against it (when a reward model judged the
 *    reward) and QA accuracy does not drop; otherwise it is registered but kept back, and the
 *    report says why.
 *
 * Run folder: metrics.jsonl, rlhf.png (curves), report.txt, adapter/, model/ (merged), before.json, after.json,
 * checkpoints/ (the newest checkpoint; a job whose run folder holds one continues from it).
 */
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { LoraAdapter } from '../../model/lora/adapter.ts';
import { resolveBase } from '../base-model.ts';
import { rlhfGate, rlhfReport, type RlhfMeasure } from './gate.ts';
import { disposePolicy, fitToPolicy, loadFeedback, loadJobRewardModel, loadPolicy } from './job-inputs.ts';
import { mergeLoraIntoChatModel } from '../../model/lora/imported-base.ts';
import { readPeftAdapter } from '../../model/lora/peft.ts';
import { RlhfJobParamsSchema, type RlhfJobContext, type RlhfJobParams, type RlhfJobResult } from './job-spec.ts';
import { policyMeasurer, writeMeasure } from './measure.ts';
import { prepareQaCheck, type QaModel } from './qa-check.ts';
import { saveRlhfModel, writeRlhfChart, writeRlhfPeftAdapter } from './save-result.ts';
import { addEval, openRunRecord, trainPolicy } from './train-policy.ts';

export { RLHF_ALGOS, RlhfJobParamsSchema, type RlhfAlgo, type RlhfJobParams, type RlhfJobOptions, type RlhfProgress, type RlhfJobContext, type RlhfJobResult } from './job-spec.ts';
export { rlhfGate, type RlhfMeasure } from './gate.ts';

const NO_POLICY = 'There is no model to improve: train one first (/train pretrain, then /train sft) or pass base=<model folder>';

export async function runRlhfJob(params: RlhfJobParams, ctx: RlhfJobContext): Promise<RlhfJobResult> {
  const p = RlhfJobParamsSchema.parse(params);
  const log = ctx.log ?? (() => {});
  const { home, runDir } = ctx;
  const t0 = performance.now();
  await fs.mkdir(runDir, { recursive: true });
  const base = await resolveBase(home, p.base, NO_POLICY);
  const feedback = await loadFeedback(p, ctx.store, log);
  const policy = await loadPolicy(base, p.maxTokens);
  const { reward, owned: ownReward } = await loadJobRewardModel(p, home, ctx.rewardModel, log, policy, base.dir).catch((err: unknown) => {
    disposePolicy(policy);
    throw err;
  });
  const { gpt, codec } = policy;
  const data = policy.kind === 'chat' ? fitToPolicy(feedback.data, codec, log) : feedback.data;
  const evalPrompts = policy.kind === 'chat' ? (data.heldOut.prompts.length ? data.heldOut.prompts : data.train.prompts) : feedback.evalPrompts;
  const qa = await prepareQaCheck(p, ctx, log);
  // The QA check's answerer: our model (the adapter answers once attached), or the imported engine, with the adapter merged after training.
  // The merge builds a new engine (the touched matrices new float32 arrays, the others shared as they are) and
  // writes into none of the engine's arrays, which the frozen policy and its reference go on reading.
  const qaModel = async (trained?: LoraAdapter): Promise<QaModel> => {
    if (policy.kind === 'teamllm') return policy.loaded;
    const { model, tokenizer, manifest } = policy.chat;
    if (!trained) return { engine: model, tokenizer };
    const dir = await writeRlhfPeftAdapter(runDir, trained, manifest.origin);
    return { engine: mergeLoraIntoChatModel(model, readPeftAdapter(dir)), tokenizer };
  };
  const measure = policyMeasurer({ gpt, codec, data, evalPrompts, reward, evalSamples: p.evalSamples, seed: p.seed, taste: ctx.taste, log });

  const record = await openRunRecord(p.algo, runDir, log);
  const resumedExtra = record.resumed?.extra;
  let adapter: LoraAdapter | undefined;
  let status: RlhfJobResult['status'] = 'completed';
  let steps = 0;
  let before: RlhfMeasure;
  let after: RlhfMeasure;
  try {
    ctx.progress?.({ stage: 'prepare', step: 0, totalSteps: 1 });
    if (resumedExtra) {
      before = resumedExtra.before;
      steps = record.resumed!.step;
    } else {
      before = await measure('before', 0);
      before.qa = await qa.run('before', () => qaModel());
      await writeMeasure(path.join(runDir, 'before.json'), before);
      addEval(record, 0, before);
    }
    const trained = await trainPolicy({ p, ctx, policy, data, reward, record, measure, before, startStep: steps, ...(base.version ? { baseVersion: base.version } : {}) });
    ({ adapter, status, steps } = trained);
    if (status !== 'completed') {
      throw new Error(
        trained.checkpointStep !== undefined
          ? `RLHF (${p.algo}) stopped at step ${steps}: checkpoint saved at step ${trained.checkpointStep}; /train resume continues from it`
          : `RLHF (${p.algo}) stopped at step ${steps}: nothing was saved (no step was finished; start it again)`,
      );
    }
    after = await measure('after', steps);
    after.qa = await qa.run('after', () => qaModel(adapter));
    await writeMeasure(path.join(runDir, 'after.json'), after);
    addEval(record, steps, after);
  } catch (err) {
    LoraAdapter.detach(gpt);
    adapter?.dispose();
    disposePolicy(policy);
    if (ownReward) reward?.dispose();
    throw err;
  } finally {
    await record.metrics.close();
    qa.kb?.close();
  }

  const chartFile = await writeRlhfChart({ runDir, algo: p.algo, base, maxKl: p.maxKl, steps, before, after, curves: record.curves, evals: record.evals });
  const { passed, reasons, failed } = rlhfGate(before, after, {
    completed: status === 'completed',
    maxKl: p.maxKl,
    qaTolerance: p.qaTolerance,
    marginTolerance: p.marginTolerance,
    ...(reward ? { rewardName: reward.info.name } : {}),
    ...(policy.kind === 'chat' ? { reference: `the base ${base.version}` } : {}),
  });
  const gate = { passed, reasons };
  const adapterDir = path.join(runDir, 'adapter');
  const modelVersion = adapter && status === 'completed'
    ? await saveRlhfModel({
        home, runDir, algo: p.algo, base, steps, adapter, gpt, before, after, gate,
        ...(policy.kind === 'teamllm' ? { tokenizer: policy.loaded.tokenizer } : { chat: { baseModel: policy.chat.manifest.origin } }),
      })
    : undefined;
  LoraAdapter.detach(gpt);
  adapter?.dispose();
  disposePolicy(policy);
  if (ownReward) reward?.dispose();

  const wallSec = (performance.now() - t0) / 1000;
  const { report, summary } = rlhfReport({ algo: p.algo, base, status, steps, wallSec, data, before, after, gate: { passed, reasons, failed }, maxKl: p.maxKl, ...(modelVersion ? { modelVersion } : {}) });
  const reportFile = path.join(runDir, 'report.txt');
  await fs.writeFile(reportFile, `${report}\n`);
  log(report);
  return {
    status,
    algo: p.algo,
    summary,
    report,
    before,
    after,
    gate,
    ...(modelVersion ? { modelVersion } : {}),
    ...(base.version ? { baseVersion: base.version } : {}),
    wallSec,
    steps,
    files: { chart: chartFile, report: reportFile, adapter: adapterDir, metrics: record.metricsFile },
    data: { prompts: data.train.prompts.length, votes: data.train.votes.length, pairs: data.train.pairs.length, heldOutPrompts: data.heldOut.prompts.length },
  };
}
