/** What every quickstart stage is handed: the run it belongs to and the reporter it tells. */
import type { JobProgress, Logger } from '../core/index.ts';
import type { ModelRegistry } from '../model/registry.ts';
import type { Config } from './config.ts';
import type { QuickstartInputs } from './quickstart-inputs.ts';
import type { QuickstartRecipe } from './quickstart-recipes.ts';

export type QuickstartStage = 'tokenizer' | 'pretrain' | 'sft' | 'ingest';

export interface QuickstartReporter {
  /** A stage starts (`cached`: its result was already there). */
  stage(name: QuickstartStage, cached: boolean): void;
  progress(p: JobProgress): void;
  /** A stage ended; `line` says what it made. */
  done(name: QuickstartStage, line: string): void;
  log(line: string): void;
}

export const silentReporter: QuickstartReporter = { stage() {}, progress() {}, done() {}, log() {} };

/** What the run's progress.json remembers, so a restarted run skips the stages it finished. */
export interface QuickstartProgress {
  baseVersion?: string;
  sft?: { modelVersion?: string; summary: string };
}

export interface QuickstartRun {
  config: Config;
  logger: Logger;
  recipe: QuickstartRecipe;
  inputs: QuickstartInputs;
  /** The cache key; `dir` is $TEAMLLM_HOME/quickstart/<key>. */
  key: string;
  dir: string;
  registry: ModelRegistry;
  reporter: QuickstartReporter;
  signal?: AbortSignal;
  progress: QuickstartProgress;
  saveProgress(): Promise<void>;
}
