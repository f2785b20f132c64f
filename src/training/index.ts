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
export { pretrainInWorker } from './worker.ts';
