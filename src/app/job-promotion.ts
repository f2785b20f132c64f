import type { JobRecord, Logger } from '../core/index.ts';
import type { ModelRegistry } from '../model/registry.ts';
import type { JobRunner } from '../training/jobs/job-runner.ts';
import type { StageResult } from '../training/jobs/stage.ts';
import type { RegistryModelService } from './model-service.ts';

export interface PromotionDecision {
  promote: boolean;
  /** Why (shown in the job's chat message either way). */
  reason: string;
}

/**
 * The one rule for promoting a job's model without a person: the stage registered a version, its
 * evaluation gate passed, the admin did not say `promote=never`, and the version was trained from
 * the model serving now (or nothing serves yet) — never replace a model it was not compared with.
 */
export function decidePromotion(input: {
  result: Pick<StageResult, 'modelVersion' | 'gate'>;
  params: Record<string, string>;
  /** The candidate version's parent in the registry. */
  parent?: string | undefined;
  /** The version serving now. */
  serving?: string | undefined;
}): PromotionDecision {
  const { result, params, parent, serving } = input;
  const version = result.modelVersion;
  if (!version) return { promote: false, reason: 'no model version was registered' };
  const byHand = `promote it by hand with /model promote ${version}`;
  if (params.promote === 'never') return { promote: false, reason: `promote=never: ${byHand}` };
  if (!result.gate) return { promote: false, reason: `this stage has no evaluation gate: ${byHand}` };
  if (!result.gate.passed) return { promote: false, reason: `it did not pass the evaluation gate (${result.gate.reasons.join('; ') || 'no reason given'}); an admin can still ${byHand}` };
  if (serving && serving !== parent) return { promote: false, reason: `${serving} serves now but ${version} was trained from ${parent ?? 'scratch'}: ${byHand}` };
  return { promote: true, reason: `it passed the evaluation gate${serving ? ` against ${serving}` : ''}` };
}

/**
 * After every successful job (main process, before the job's final message): records the gate
 * with the model version in the registry and promotes it when decidePromotion says so. The
 * promotion is audited under the admin who started the job, marked automatic.
 */
export function installAutoPromotion(runner: JobRunner, deps: { registry: ModelRegistry; models: RegistryModelService; logger: Logger }): void {
  runner.onSucceeded(async (job: JobRecord) => {
    const result = (job.result ?? {}) as Partial<StageResult>;
    const version = result.modelVersion;
    if (!version) return undefined;
    const candidate = await deps.registry.annotate(version, { job: job.id, ...(result.gate ? { gate: result.gate } : {}) });
    const serving = (await deps.registry.serving())?.version;
    if (serving === version) {
      // A stage that promoted its own result (it should leave that to this rule): serve it now and record it.
      await deps.models.promote(version, { id: job.requestedBy, isAdmin: true }, { auto: true, job: job.id });
      deps.logger.warn({ job: job.id, version }, 'a training stage promoted its own model; promotion belongs to the job runner (src/app/job-promotion.ts)');
      return { promotion: { version, promoted: true, reason: `the stage promoted it itself${result.gate ? ` (evaluation gate ${result.gate.passed ? 'passed' : 'NOT passed'})` : ''}` } };
    }
    const decision = decidePromotion({ result, params: job.params, parent: candidate.parent, serving });
    if (decision.promote) {
      await deps.models.promote(version, { id: job.requestedBy, isAdmin: true }, { auto: true, job: job.id });
      deps.logger.info({ job: job.id, version, previous: serving }, 'promoted the job\'s model: its evaluation gate passed');
    }
    return { promotion: { version, promoted: decision.promote, reason: decision.reason, ...(serving ? { previous: serving } : {}) } };
  });
}
