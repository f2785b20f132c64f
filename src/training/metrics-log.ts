import { promises as fs } from 'node:fs';

/**
 * Opens a run's metrics.jsonl for writing: a fresh run starts it empty; a run resumed from the
 * checkpoint at `resumedStep` keeps the lines up to that step (and drops later ones, and a line
 * cut short by a kill), so the file reads as one uninterrupted run.
 */
export async function openMetricsLog(file: string, resumedStep?: number): Promise<fs.FileHandle> {
  let kept = '';
  if (resumedStep !== undefined) {
    const stepOf = (line: string) => {
      try {
        return (JSON.parse(line) as { step: number }).step;
      } catch {
        return Infinity;
      }
    };
    const old = await fs.readFile(file, 'utf8').catch(() => '');
    kept = old.split('\n').filter((l) => l.trim() && stepOf(l) <= resumedStep).map((l) => `${l}\n`).join('');
  }
  const handle = await fs.open(file, 'w');
  if (kept) await handle.appendFile(kept);
  return handle;
}
