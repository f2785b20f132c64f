import type { QuickstartReporter, QuickstartStage } from '../app/quickstart.ts';
import { jobProgressBar } from './job-progress-bar.ts';

const TITLES: Record<QuickstartStage, string> = {
  tokenizer: '1/4 tokenizer',
  pretrain: '2/4 pretraining',
  sft: '3/4 LoRA fine-tuning on the handbook',
  ingest: '4/4 knowledge base into Chroma',
};

/** Terminal output of the first-start training: a heading and a progress bar per stage. */
export function terminalQuickstartReporter(stream: NodeJS.WriteStream = process.stderr): QuickstartReporter & { stop(): void } {
  let bar: ReturnType<typeof jobProgressBar> | undefined;
  let barStage = '';
  const stopBar = () => {
    bar?.stop();
    bar = undefined;
  };
  return {
    stage(name, cached) {
      stopBar();
      stream.write(`${TITLES[name]}${cached ? ' (cached)' : ''}\n`);
    },
    progress(p) {
      // One bar per sub-stage (sft shows "evaluate" before and after training).
      if (!bar || barStage !== p.stage) {
        stopBar();
        bar = jobProgressBar(stream);
        barStage = p.stage;
      }
      bar.update(p);
    },
    done(_name, line) {
      stopBar();
      stream.write(`    ${line.split('\n').join('\n    ')}\n`);
    },
    log(line) {
      if (!bar) stream.write(`    ${line}\n`);
    },
    stop: stopBar,
  };
}
