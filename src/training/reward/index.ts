/** The reward model: contract, data encoding and losses, training, held-out measures, storage. */
export type { RewardModel } from './reward-model.ts';
export { encodeRewardInput, rewardScores, rewardBatch, pairLoss, voteLoss, combinedLoss, createHead, HEAD_WEIGHT, HEAD_BIAS } from './model.ts';
export { auc, pairAccuracy, rewardGate, DEFAULT_GATE, type Estimate, type GateOptions } from './metrics.ts';
export { trainRewardModel, type RewardTrainOptions, type RewardTrainResult, type RewardProgress } from './train.ts';
export {
  loadRewardModel,
  saveRewardModel,
  listRewardModels,
  currentRewardModel,
  setCurrentRewardModel,
  rewardDir,
  RewardScorer,
  REWARD_FORMAT,
  type RewardConfigFile,
} from './store.ts';
export { simulateFeedback, syntheticFacts, handbookFacts, type Fact, type AnswerKind } from './simulated-feedback.ts';
