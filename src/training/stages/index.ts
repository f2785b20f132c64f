/** Training stages the job runner can run: job kind -> module exporting `runStage`. */
export const TRAINING_STAGES: Record<string, string> = {
  pretrain: new URL('./pretrain-stage.ts', import.meta.url).href,
  sft: new URL('./sft-stage.ts', import.meta.url).href,
  reward: new URL('./reward-stage.ts', import.meta.url).href,
  rlhf: new URL('./rlhf-stage.ts', import.meta.url).href,
  selector: new URL('./selector-stage.ts', import.meta.url).href,
  embeddings: new URL('./embeddings-stage.ts', import.meta.url).href,
};
