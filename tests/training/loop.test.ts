import { describe, expect, it } from 'vitest';
import { TrainingLoop } from '../../src/training/loop.ts';
import { EpochOrder } from '../../src/training/data-order.ts';

/** The loop's order of events, with steps that only record what happened. */
function recorder(total: number, opts: { resumedFrom?: number; stopAfter?: number } = {}) {
  const events: string[] = [];
  const ac = new AbortController();
  const loop = new TrainingLoop({
    totalSteps: total,
    learningRate: 0.5,
    signal: ac.signal,
    resumedFrom: opts.resumedFrom,
    step: (step, lr) => {
      events.push(`step ${step} lr ${lr}`);
      return { loss: 1 / (step + 1) };
    },
    onStep: (ev) => {
      events.push(`done ${ev.step}`);
      if (ev.step === opts.stopAfter) ac.abort();
    },
    evaluate: { every: 2, run: (step) => void events.push(`eval ${step}`) },
    checkpoint: { every: 3, save: async (step) => void events.push(`save ${step}`) },
  });
  return { loop, events };
}

describe('TrainingLoop', () => {
  it('evaluates and checkpoints on their cadences before the last step, in that order', async () => {
    const { loop, events } = recorder(4);
    expect(await loop.run()).toEqual({ status: 'completed', step: 4, lastCheckpoint: 3 });
    expect(events).toEqual(['eval 0', 'step 0 lr 0.5', 'done 1', 'step 1 lr 0.5', 'done 2', 'eval 2', 'step 2 lr 0.5', 'done 3', 'save 3', 'step 3 lr 0.5', 'done 4']);
    expect(loop.timer.steps).toBe(4);
  });

  it('a stop between steps checkpoints the step reached, once', async () => {
    const stopped = recorder(10, { stopAfter: 2 });
    expect(await stopped.loop.run()).toEqual({ status: 'aborted', step: 2, lastCheckpoint: 2 });
    expect(stopped.events.slice(-2)).toEqual(['eval 2', 'save 2']);
    // Stopped right after a cadence checkpoint: no second one.
    const atCheckpoint = recorder(10, { stopAfter: 3 });
    expect(await atCheckpoint.loop.run()).toEqual({ status: 'aborted', step: 3, lastCheckpoint: 3 });
    expect(atCheckpoint.events.filter((e) => e.startsWith('save'))).toEqual(['save 3']);
  });

  it('resumes at the checkpoint step without writing it again', async () => {
    const { loop, events } = recorder(5, { resumedFrom: 3 });
    expect(await loop.run()).toEqual({ status: 'completed', step: 5, lastCheckpoint: 3 });
    expect(events).toEqual(['step 3 lr 0.5', 'done 4', 'eval 4', 'step 4 lr 0.5', 'done 5']);
  });

  it('throws the trainer’s message on a loss that is not finite', async () => {
    const loop = new TrainingLoop({ totalSteps: 3, learningRate: 1, step: () => ({ loss: NaN }), diverged: (s, l) => `diverged at step ${s} (loss ${l})` });
    await expect(loop.run()).rejects.toThrow('diverged at step 0 (loss NaN)');
  });
});

describe('EpochOrder', () => {
  it('gives the same endless order drawn in batches, after a restore, or from a seek', () => {
    const a = new EpochOrder(7, 1337, 31);
    const all = [...a.next(5), ...a.next(5), ...a.next(11)];
    expect(new Set(all.slice(0, 7)).size).toBe(7);
    expect(all.slice(7, 14)).not.toEqual(all.slice(0, 7));
    const b = new EpochOrder(7, 1337, 31);
    b.next(10);
    const saved = b.position;
    const c = new EpochOrder(7, 1337, 31);
    c.restore(saved);
    expect(c.next(11)).toEqual(all.slice(10));
    const d = new EpochOrder(7, 1337, 31);
    d.seek(13);
    expect(d.next(8)).toEqual(all.slice(13));
  });
});
