/**
 * What pretraining and SFT keep in a checkpoint's state.json (their curves and time), and how an
 * evaluation enters it and metrics.jsonl: both trainers resume from it and draw loss.png from it.
 */
import type { FileHandle } from 'node:fs/promises';
import type { LossPoint } from './loss-chart.ts';

export interface TrainerState {
  /** Optimizer steps completed. */
  step: number;
  /** Training loss per step, validation loss per evaluation. */
  history: { train: LossPoint[]; val: LossPoint[] };
  /** Seconds spent training (evaluations included) across sessions. */
  elapsedSec: number;
  tokensSeen: number;
}

export function freshTrainerState(): TrainerState {
  return { step: 0, history: { train: [], val: [] }, elapsedSec: 0, tokensSeen: 0 };
}

/** A resumed run whose checkpoint was written after the evaluation at its step does not repeat it. */
export function evaluatedAt(state: TrainerState, step: number): boolean {
  return state.history.val.at(-1)?.step === step;
}

/**
 * Records a validation loss at the state's step — the final evaluation, with more batches,
 * replaces the cadence's at the same step — and writes its metrics.jsonl line.
 */
export async function recordValidation(state: TrainerState, metrics: FileHandle, loss: number, extra: Record<string, number> = {}): Promise<void> {
  const prev = state.history.val.at(-1);
  if (prev && prev.step === state.step) prev.loss = loss;
  else state.history.val.push({ step: state.step, loss });
  await metrics.appendFile(`${JSON.stringify({ step: state.step, val_loss: loss, ...extra })}\n`);
}
