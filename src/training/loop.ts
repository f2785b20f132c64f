/**
 * The training loop every trainer runs (pretraining, SFT, the reward model, DPO/KTO, PPO). A
 * trainer supplies one step (its batch, loss and update), its evaluation, its chart and what its
 * checkpoint holds; the loop owns the order around them, so that every trainer stops, resumes,
 * logs and measures the same way:
 *
 *   evaluate at the start step when it is on the cadence (the trainer skips a step it has measured)
 *   per step: stop? (checkpoint first) → lr → step → divergence check → timing → metrics.jsonl
 *             line → progress → evaluation, chart and checkpoint on their cadences
 *
 * The evaluation at a step comes before that step's checkpoint, so a run resumed from it has the
 * measurement and does not repeat it.
 *
 * A stop is seen between steps: the step under way finishes, a checkpoint of it is written unless
 * one already exists, and a later run with the same settings continues from it exactly (each
 * trainer derives its batches and dropout from the step or saves its generator's position).
 */
import type { FileHandle } from 'node:fs/promises';
import * as tf from '@tensorflow/tfjs-core';
import type { Tensor } from '@tensorflow/tfjs-core';
import { globalNorm, type AdamW } from './adamw.ts';
import { learningRateAt, type LrSchedule } from './schedule.ts';

export interface StepOutcome {
  loss: number;
  /** The gradient norm before clipping (written to metrics.jsonl). */
  gradNorm?: number;
}

export interface StepEvent {
  /** Steps done, this one included. */
  step: number;
  totalSteps: number;
  loss: number;
  lr: number;
  gradNorm?: number;
  /** This step's time. */
  ms: number;
}

/** Time spent in steps in this session (evaluations and checkpoints excluded). */
export class StepTimer {
  trainMs = 0;
  steps = 0;
  /** Smoothed ms per step; the first two steps are taken as they are (the first one warms up). */
  emaMs = 0;

  add(ms: number): void {
    this.trainMs += ms;
    this.steps += 1;
    this.emaMs = this.steps <= 2 ? ms : 0.9 * this.emaMs + 0.1 * ms;
  }

  get meanMs(): number {
    return this.steps ? this.trainMs / this.steps : 0;
  }

  /** For progress: the smoothed value once there is one. */
  get currentMs(): number {
    return this.emaMs || this.meanMs;
  }

  etaSec(stepsLeft: number): number {
    return (stepsLeft * this.currentMs) / 1000;
  }
}

export interface LoopSpec {
  /** The step of the checkpoint the run resumed from: it starts there, and writes no second checkpoint there. */
  resumedFrom?: number | undefined;
  totalSteps: number;
  /** A warmup + cosine schedule, or one rate throughout. */
  learningRate: LrSchedule | number;
  signal?: AbortSignal | undefined;
  /** One step; `step` is the number done before it. */
  step: (step: number, lr: number) => StepOutcome | Promise<StepOutcome>;
  /** The error message for a loss that is not finite (unchecked without it). */
  diverged?: (step: number, loss: number) => string;
  /** Receives `{step, loss, lr, grad_norm, ms}` per step. */
  metrics?: FileHandle;
  onStep?: (ev: StepEvent) => void | Promise<void>;
  /** Runs at every multiple of `every` before the last step (the final evaluation is the trainer's). */
  evaluate?: { every: number; run: (step: number) => void | Promise<void> };
  chart?: { every: number; draw: () => Promise<void> };
  checkpoint?: { every: number; save: (step: number) => Promise<void> };
}

export interface LoopOutcome {
  status: 'completed' | 'aborted';
  step: number;
  /** Step of the newest checkpoint this run wrote or resumed from. */
  lastCheckpoint?: number;
}

export class TrainingLoop {
  readonly timer = new StepTimer();
  lastCheckpoint: number | undefined;

  constructor(private readonly spec: LoopSpec) {
    this.lastCheckpoint = spec.resumedFrom;
  }

  learningRateAt(step: number): number {
    const lr = this.spec.learningRate;
    return typeof lr === 'number' ? lr : learningRateAt(step, lr);
  }

  async run(): Promise<LoopOutcome> {
    const s = this.spec;
    const total = s.totalSteps;
    const due = (every: number | undefined, step: number) => every !== undefined && step % every === 0 && step < total;
    let step = s.resumedFrom ?? 0;
    if (due(s.evaluate?.every, step)) await s.evaluate!.run(step);
    while (step < total) {
      if (s.signal?.aborted) {
        if (step > 0 && this.lastCheckpoint !== step) await this.save(step);
        return { status: 'aborted', step, ...(this.lastCheckpoint !== undefined ? { lastCheckpoint: this.lastCheckpoint } : {}) };
      }
      const lr = this.learningRateAt(step);
      const t0 = performance.now();
      const out = await s.step(step, lr);
      if (s.diverged && !Number.isFinite(out.loss)) throw new Error(s.diverged(step, out.loss));
      const ms = performance.now() - t0;
      this.timer.add(ms);
      step += 1;
      await s.metrics?.appendFile(`${JSON.stringify({ step, loss: out.loss, lr, grad_norm: out.gradNorm, ms: Math.round(ms) })}\n`);
      await s.onStep?.({ step, totalSteps: total, loss: out.loss, lr, ms, ...(out.gradNorm !== undefined ? { gradNorm: out.gradNorm } : {}) });
      if (due(s.evaluate?.every, step)) await s.evaluate!.run(step);
      if (due(s.chart?.every, step)) await s.chart!.draw();
      if (due(s.checkpoint?.every, step)) await this.save(step);
    }
    return { status: 'completed', step, ...(this.lastCheckpoint !== undefined ? { lastCheckpoint: this.lastCheckpoint } : {}) };
  }

  /** Writes a checkpoint through the trainer's `save` (also how a trainer writes its final one). */
  async save(step: number): Promise<void> {
    if (!this.spec.checkpoint) return;
    await this.spec.checkpoint.save(step);
    this.lastCheckpoint = step;
  }
}

/** Global-norm clipping and one AdamW update; the caller installs the returned parameters. */
export function clippedUpdate(opt: AdamW, params: Map<string, Tensor>, grads: Map<string, Tensor>, lr: number, clip: number): { next: Map<string, Tensor>; norm: number } {
  const norm = globalNorm(grads.values());
  const scale = clip > 0 && norm > clip ? clip / (norm + 1e-6) : 1;
  return { next: opt.apply(params, grads, lr, scale), norm };
}

/** Sums the gradients of `micros` micro-batches (gradient accumulation) and their losses. */
export function accumulateGradients(micros: number, micro: (i: number) => { value: Tensor; grads: Tensor[] }): { loss: number; grads: Tensor[] } {
  let grads: Tensor[] | undefined;
  let loss = 0;
  for (let i = 0; i < micros; i++) {
    const res = micro(i);
    loss += res.value.dataSync()[0]!;
    res.value.dispose();
    if (!grads) grads = res.grads;
    else {
      const summed = grads.map((g, j) => tf.add(g, res.grads[j]!));
      grads.forEach((g) => g.dispose());
      res.grads.forEach((g) => g.dispose());
      grads = summed;
    }
  }
  return { loss, grads: grads! };
}
