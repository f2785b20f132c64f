/** `teamllm data export`: datasets from the runtime's answer and vote records (docs/feedback-loop.md). */
import { EXPORT_KINDS, exportDataset, type ExportKind } from '../training/feedback-datasets.ts';
import type { Runtime } from './runtime.ts';

export const DATASET_KINDS: readonly string[] = EXPORT_KINDS;

/** The rows of one kind, one JSON-ready object each; `kind` must be one of DATASET_KINDS. */
export function datasetRows(runtime: Runtime, kind: string, options: { anonymousVotes: boolean }): AsyncIterable<Record<string, unknown>> {
  if (!EXPORT_KINDS.includes(kind as ExportKind)) throw new Error(`unknown dataset kind ${kind}`);
  return exportDataset(runtime.store, kind as ExportKind, options.anonymousVotes ? {} : { anonymousVotes: false });
}
