import type { JobProgress, JobRecord } from '../../core/index.ts';

const STATUS_ICON: Record<JobRecord['status'], string> = {
  queued: '⏳',
  running: '🏋️',
  succeeded: '✅',
  failed: '❌',
  stopped: '⏹️',
  interrupted: '⚠️',
};

export function formatDuration(seconds: number): string {
  const s = Math.max(0, Math.round(seconds));
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m${String(s % 60).padStart(2, '0')}s`;
  return `${Math.floor(s / 3600)}h${String(Math.floor((s % 3600) / 60)).padStart(2, '0')}m`;
}

export function progressBar(fraction: number, width = 12): string {
  const filled = Math.round(Math.min(1, Math.max(0, fraction)) * width);
  return '▓'.repeat(filled) + '░'.repeat(width - filled);
}

export function formatProgress(p: JobProgress): string {
  const fraction = p.totalSteps > 0 ? p.step / p.totalSteps : 0;
  const parts = [`${p.stage} ${progressBar(fraction)} ${p.step}/${p.totalSteps} (${Math.round(fraction * 100)}%)`];
  if (p.loss !== undefined) parts.push(`loss ${p.loss.toFixed(3)}`);
  if (p.valLoss !== undefined) parts.push(`val ${p.valLoss.toFixed(3)}`);
  if (p.tokensPerSec !== undefined) parts.push(`${Math.round(p.tokensPerSec).toLocaleString('en-US')} tok/s`);
  if (p.etaSec !== undefined) parts.push(`ETA ${formatDuration(p.etaSec)}`);
  return parts.join(' · ') + (p.message ? `\n${p.message}` : '');
}

/** The job's message in chat: status line, progress, and the outcome when it has one. */
export function formatJob(job: JobRecord): string {
  const params = Object.entries(job.params).map(([k, v]) => `${k}=${v}`).join(' ');
  const lines = [`${STATUS_ICON[job.status]} Job #${job.id} ${job.kind}${params ? ` (${params})` : ''} — ${job.status}${job.resumes ? `, continuing job #${job.resumes}` : ''}`];
  if (job.progress) lines.push(formatProgress(job.progress));
  if (job.startedAt && job.finishedAt) lines.push(`took ${formatDuration((job.finishedAt - job.startedAt) / 1000)}`);
  const summary = job.result?.summary;
  if (typeof summary === 'string') lines.push(summary);
  if (job.result) lines.push(...formatOutcome(job.result));
  if (job.error) lines.push(`error: ${job.error}`);
  if (job.status === 'stopped' || job.status === 'interrupted') lines.push('Its last checkpoint is kept: /train resume continues it.');
  return lines.join('\n');
}

const fmt = (x: number) => (Number.isInteger(x) ? String(x) : Math.abs(x) >= 100 ? x.toFixed(0) : x.toFixed(3));

/**
 * `key value, ...` for a stored metrics object. A metric that could not be measured (a reward model
 * trained without pairs has no pair accuracy) is NaN in memory and null once saved as JSON: it
 * reads "n/a", never crashes a report.
 */
export function formatMetrics(metrics: Record<string, unknown> | undefined): string {
  return Object.entries(metrics ?? {})
    .map(([k, v]) => `${k} ${typeof v === 'number' && Number.isFinite(v) ? fmt(v) : 'n/a'}`)
    .join(', ');
}

/**
 * The end of a job's message: the evaluation against the model it was compared with (every metric
 * `m` with a `baseM` beside it, as "base → new"), the other metrics, the gate and the promotion.
 */
export function formatOutcome(result: Record<string, unknown>): string[] {
  const lines: string[] = [];
  const metrics = (result.metrics ?? {}) as Record<string, number>;
  const compared: string[] = [];
  const used = new Set<string>();
  for (const [key, value] of Object.entries(metrics)) {
    const baseKey = `base${key[0]!.toUpperCase()}${key.slice(1)}`;
    if (typeof metrics[baseKey] === 'number' && typeof value === 'number') {
      compared.push(`${key} ${fmt(metrics[baseKey])} → ${fmt(value)}`);
      used.add(key).add(baseKey);
    }
  }
  if (compared.length) lines.push(`Evaluation (before → after): ${compared.join(', ')}`);
  const rest = Object.entries(metrics).filter(([k, v]) => !used.has(k) && typeof v === 'number' && Number.isFinite(v));
  if (rest.length) lines.push(`Metrics: ${rest.map(([k, v]) => `${k} ${fmt(v)}`).join(', ')}`);
  const gate = result.gate as { passed: boolean; reasons: string[] } | undefined;
  if (gate) lines.push(`Evaluation gate: ${gate.passed ? '✅ passed' : '❌ not passed'}${gate.reasons.length ? ` — ${gate.reasons.join('; ')}` : ''}`);
  const promotion = result.promotion as { version: string; promoted: boolean; reason: string; previous?: string } | undefined;
  if (promotion) {
    lines.push(
      promotion.promoted
        ? `Promoted ${promotion.version}${promotion.previous ? ` (was ${promotion.previous}; /model rollback returns to it)` : ''}: ${promotion.reason}.`
        : `Not promoted: ${promotion.reason}.`,
    );
  }
  if (typeof result.afterError === 'string') lines.push(`After the job: ${result.afterError}`);
  return lines;
}
