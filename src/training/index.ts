/** Training: tokenizer training and pretraining from zero (SFT, reward model and RLHF come later). */
export { trainTokenizer, type TrainTokenizerOptions } from './train-tokenizer.ts';
export {
  pretrain,
  evaluateLoss,
  PRETRAIN_PRESETS,
  PretrainOptionsSchema,
  type PretrainOptions,
  type PretrainHooks,
  type PretrainProgress,
  type PretrainResult,
} from './pretrain.ts';
export { AdamW, globalNorm, type AdamWOptions } from './adamw.ts';
export { learningRateAt, type LrSchedule } from './schedule.ts';
export { TokenDataset } from './dataset.ts';
export { latestCheckpoint, checkpointDir, type TrainerState } from './checkpoint.ts';
export { renderLossChart, writeLossChart, type LossPoint } from './loss-chart.ts';
export { readCorpus, listCorpusFiles } from './corpus.ts';
export { createProgressBar } from './progress-bar.ts';
/** SFT with LoRA (issue 5): data formats, QA generation from documents, training, the `/train sft` job. */
export * from './sft/index.ts';
/** QA evaluation with retrieval in the loop: EM, token F1, contains-gold; before/after comparison. */
export {
  evaluateQa,
  compareQa,
  formatQaScores,
  readQaQuestions,
  normalizeAnswer,
  answerTokens,
  exactMatch,
  tokenF1,
  containsGold,
  type EvaluateQaOptions,
  type QaQuestion,
  type QaRetriever,
  type QaItem,
  type QaScores,
  type QaComparison,
} from './eval/qa-eval.ts';
/** RLHF (issue 7): PPO against the reward model, KTO on single votes, DPO on pairs; the `rlhf` job. */
export { dpoLoss, ktoLoss, ktoReferencePoint, gae, whiten, tokenRewards, ppoLosses, AdaptiveKlController } from './rlhf/losses.ts';
export { trainPpo, type PpoOptions, type PpoStepStats, type PpoResult } from './rlhf/ppo.ts';
export { trainOffline, type OfflineOptions, type OfflineStepStats, type PreferencePair, type Vote as RlhfVote } from './rlhf/offline.ts';
export { evaluatePolicy, type PolicyEvaluation } from './rlhf/evaluate.ts';
export { rlhfData, type RlhfData } from './rlhf/data.ts';
export { runRlhfJob, RlhfJobParamsSchema, RLHF_ALGOS, type RlhfAlgo, type RlhfJobParams, type RlhfJobResult } from './rlhf/pipeline.ts';
