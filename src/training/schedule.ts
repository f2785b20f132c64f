/** Learning-rate schedule: linear warmup, then cosine decay to a floor (nanoGPT's get_lr). */
export interface LrSchedule {
  learningRate: number;
  minLearningRate: number;
  warmupIters: number;
  /** Step at which the cosine reaches minLearningRate (usually the total number of steps). */
  decayIters: number;
}

export function learningRateAt(step: number, s: LrSchedule): number {
  if (step < s.warmupIters) return (s.learningRate * (step + 1)) / (s.warmupIters + 1);
  if (step > s.decayIters) return s.minLearningRate;
  const span = Math.max(1, s.decayIters - s.warmupIters);
  const ratio = (step - s.warmupIters) / span;
  const coeff = 0.5 * (1 + Math.cos(Math.PI * ratio));
  return s.minLearningRate + coeff * (s.learningRate - s.minLearningRate);
}
