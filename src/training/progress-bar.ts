/** A terminal progress bar for pretraining: step, loss, val loss, tokens/s and ETA. */
import cliProgress from 'cli-progress';
import type { PretrainProgress } from './pretrain.ts';

function fmtEta(sec: number): string {
  if (!Number.isFinite(sec) || sec <= 0) return '0s';
  const h = Math.floor(sec / 3600);
  const m = Math.floor((sec % 3600) / 60);
  const s = Math.floor(sec % 60);
  return h ? `${h}h${String(m).padStart(2, '0')}m` : m ? `${m}m${String(s).padStart(2, '0')}s` : `${s}s`;
}

/** Returns an onProgress handler and a stop function (call it when training ends). */
export function createProgressBar(stream: NodeJS.WritableStream = process.stderr): {
  onProgress: (ev: PretrainProgress) => void;
  stop: () => void;
} {
  const bar = new cliProgress.SingleBar(
    {
      format: 'pretrain |{bar}| {value}/{total} loss {loss} val {val} | {tps} tok/s | ETA {eta_h}',
      hideCursor: true,
      stream,
      fps: 5,
    },
    cliProgress.Presets.shades_classic,
  );
  let started = false;
  let val = '-';
  return {
    onProgress: (ev) => {
      if (ev.valLoss !== undefined) val = ev.valLoss.toFixed(3);
      const payload = {
        loss: Number.isFinite(ev.loss) ? ev.loss.toFixed(3) : '-',
        val,
        tps: Math.round(ev.tokensPerSec),
        eta_h: fmtEta(ev.etaSec),
      };
      if (!started) {
        bar.start(ev.totalSteps, ev.step, payload);
        started = true;
      } else bar.update(ev.step, payload);
    },
    stop: () => {
      if (started) bar.stop();
    },
  };
}
