/**
 * Training checkpoints: a model folder (weights, config, tokenizer) plus the optimizer's moments
 * and the trainer's state, under `<run>/checkpoints/step-NNNNNNNN/`. Each checkpoint is built in a
 * temporary folder and renamed into place, so a kill at any moment leaves the previous checkpoint
 * intact and never a half-written one.
 */
import { promises as fs } from 'node:fs';
import path from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import type { GPT } from '../model/gpt.ts';
import type { Tokenizer } from '../model/tokenizer/index.ts';
import { saveModelFiles, loadModelFiles, tensorsToArrays, arraysToTensors } from '../model/model-files.ts';
import { readSafetensors, writeSafetensors } from '../model/safetensors.ts';
import { readJson, writeDirAtomic, writeJsonAtomic } from '../model/files.ts';
import type { AdamW } from './adamw.ts';
import type { LossPoint } from './loss-chart.ts';

export interface TrainerState {
  /** Optimizer steps completed. */
  step: number;
  /** Training loss per step, validation loss per evaluation. */
  history: { train: LossPoint[]; val: LossPoint[] };
  /** Seconds spent training (evaluations included) across sessions. */
  elapsedSec: number;
  tokensSeen: number;
}

const STEP_DIR = /^step-(\d+)$/;

export function checkpointDir(runDir: string, step: number): string {
  return path.join(runDir, 'checkpoints', `step-${String(step).padStart(8, '0')}`);
}

/** The newest complete checkpoint of a run, if any. */
export async function latestCheckpoint(runDir: string): Promise<{ dir: string; step: number } | undefined> {
  let names: string[];
  try {
    names = await fs.readdir(path.join(runDir, 'checkpoints'));
  } catch {
    return undefined;
  }
  const steps = names
    .map((n) => STEP_DIR.exec(n))
    .filter((m): m is RegExpExecArray => m !== null)
    .map((m) => Number(m[1]))
    .sort((a, b) => b - a);
  for (const step of steps) {
    const dir = checkpointDir(runDir, step);
    try {
      await fs.access(path.join(dir, 'state.json'));
      return { dir, step };
    } catch {
      // not complete (should not happen with atomic renames): try an older one
    }
  }
  return undefined;
}

export async function saveCheckpoint(
  runDir: string,
  model: GPT,
  tokenizer: Tokenizer,
  optimizer: AdamW,
  state: TrainerState,
  meta: Record<string, unknown>,
  keep: number,
): Promise<string> {
  const dir = checkpointDir(runDir, state.step);
  await writeDirAtomic(dir, async (tmp) => {
    await saveModelFiles(tmp, model, tokenizer, { ...meta, step: state.step });
    await writeSafetensors(path.join(tmp, 'optimizer.safetensors'), tensorsToArrays(optimizer.stateTensors()), {
      step: String(optimizer.step),
    });
    await writeJsonAtomic(path.join(tmp, 'state.json'), state);
  });
  await pruneCheckpoints(runDir, keep);
  return dir;
}

async function pruneCheckpoints(runDir: string, keep: number): Promise<void> {
  if (keep <= 0) return;
  const root = path.join(runDir, 'checkpoints');
  const names = await fs.readdir(root);
  const steps = names
    .map((n) => STEP_DIR.exec(n))
    .filter((m): m is RegExpExecArray => m !== null)
    .map((m) => Number(m[1]))
    .sort((a, b) => b - a);
  for (const step of steps.slice(keep)) {
    await fs.rm(checkpointDir(runDir, step), { recursive: true, force: true });
  }
  // Temporary folders of a killed save.
  for (const n of names) if (n.includes('.tmp-')) await fs.rm(path.join(root, n), { recursive: true, force: true });
}

export async function loadCheckpoint(dir: string, optimizer: AdamW): Promise<{ model: GPT; tokenizer: Tokenizer; state: TrainerState }> {
  const { model, tokenizer } = await loadModelFiles(dir);
  const opt = await readSafetensors(path.join(dir, 'optimizer.safetensors'));
  optimizer.loadState(Number(opt.metadata.step ?? 0), arraysToTensors(opt.tensors) as Map<string, tf.Tensor>);
  const state = await readJson<TrainerState>(path.join(dir, 'state.json'));
  return { model, tokenizer, state };
}

/**
 * The step and the caller's extra state (curves, evaluations) of the newest checkpoint in runDir
 * whose state.json has the given format — how a job that drives a trainer resumes its own state.
 */
export async function latestCheckpointExtra(runDir: string, format: string): Promise<{ step: number; extra: unknown } | undefined> {
  const found = await latestCheckpoint(runDir);
  if (!found) return undefined;
  const st = await readJson<{ format?: string; step: number; extra?: unknown }>(path.join(found.dir, 'state.json'));
  return st.format === format ? { step: st.step, extra: st.extra } : undefined;
}

/** What an adapter trainer (reward model, DPO/KTO, PPO) keeps in a checkpoint's state.json. */
export interface TrainerCheckpointState {
  format: string;
  step: number;
  /** The settings that decide the trajectory: a checkpoint made with others is refused. */
  run: Record<string, unknown>;
}

/**
 * Saves an adapter trainer's checkpoint — its trainable tensors, the AdamW state and `state` — as
 * one folder written atomically, and drops every older one (and any temporary folder of a killed
 * save): these trainers keep only the newest.
 */
export async function saveTrainerCheckpoint(runDir: string, state: TrainerCheckpointState, trainables: Iterable<[string, tf.Tensor]>, optimizer: AdamW): Promise<void> {
  const dir = checkpointDir(runDir, state.step);
  await writeDirAtomic(dir, async (tmp) => {
    await writeSafetensors(path.join(tmp, 'trainables.safetensors'), tensorsToArrays(new Map(trainables)), { step: String(state.step) });
    await writeSafetensors(path.join(tmp, 'optimizer.safetensors'), tensorsToArrays(optimizer.stateTensors()), { step: String(optimizer.step) });
    await writeJsonAtomic(path.join(tmp, 'state.json'), state);
  });
  const root = path.join(runDir, 'checkpoints');
  for (const n of await fs.readdir(root)) if (path.join(root, n) !== dir) await fs.rm(path.join(root, n), { recursive: true, force: true });
}

/**
 * The newest checkpoint of an adapter trainer in runDir, or undefined: its state, its trainable
 * tensors, and the optimizer restored into `optimizer`. Throws (saying which) when the checkpoint
 * is of another kind or was made with other `run` settings.
 */
export async function loadTrainerCheckpoint<S extends TrainerCheckpointState>(
  runDir: string,
  expected: { format: string; run: Record<string, unknown>; what: string },
  optimizer: AdamW,
): Promise<{ dir: string; state: S; trainables: Map<string, tf.Tensor> } | undefined> {
  const found = await latestCheckpoint(runDir);
  if (!found) return undefined;
  const state = await readJson<S>(path.join(found.dir, 'state.json'));
  if (state.format !== expected.format) throw new Error(`${expected.what}: ${found.dir} is not a ${expected.what} checkpoint`);
  const differs = Object.keys(expected.run).filter((k) => JSON.stringify(state.run[k]) !== JSON.stringify(expected.run[k]));
  if (differs.length) {
    throw new Error(`${expected.what}: the checkpoint in ${found.dir} was made with other settings (${differs.join(', ')}); resume with the same parameters, or train in a new run folder`);
  }
  const trainables = arraysToTensors((await readSafetensors(path.join(found.dir, 'trainables.safetensors'))).tensors);
  const opt = await readSafetensors(path.join(found.dir, 'optimizer.safetensors'));
  optimizer.loadState(Number(opt.metadata.step ?? 0), arraysToTensors(opt.tensors));
  return { dir: found.dir, state, trainables };
}

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
