import cliProgress from 'cli-progress';
import { formatDuration, type JobProgress } from '../app/training-jobs.ts';

/** A terminal progress bar for any training job: stage, step, loss, val loss, tokens/s, ETA. */
export function jobProgressBar(stream: NodeJS.WritableStream = process.stderr): { update(p: JobProgress): void; stop(): void } {
  const bar = new cliProgress.SingleBar(
    { format: '{stage} |{bar}| {value}/{total} loss {loss} val {val} | {tps} tok/s | ETA {eta}', hideCursor: true, stream, fps: 5 },
    cliProgress.Presets.shades_classic,
  );
  let started = false;
  let val = '-';
  return {
    update(p) {
      if (p.valLoss !== undefined) val = p.valLoss.toFixed(3);
      const payload = {
        stage: p.stage.padEnd(8),
        loss: p.loss !== undefined && Number.isFinite(p.loss) ? p.loss.toFixed(3) : '-',
        val,
        tps: p.tokensPerSec !== undefined ? Math.round(p.tokensPerSec) : '-',
        eta: p.etaSec !== undefined ? formatDuration(p.etaSec) : '-',
      };
      if (!started) {
        bar.start(p.totalSteps, p.step, payload);
        started = true;
      } else {
        bar.setTotal(p.totalSteps);
        bar.update(p.step, payload);
      }
    },
    stop() {
      if (started) bar.stop();
    },
  };
}
