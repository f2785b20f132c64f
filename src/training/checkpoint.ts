/**
 * Training checkpoints, one format for every trainer: under `<run>/checkpoints/step-NNNNNNNN/`
 * the trainer's own tensors (a model folder, a LoRA adapter, or `trainables.safetensors`), the
 * optimizer's moments (`optimizer.safetensors`) and the trainer's state (`state.json`). Each is
 * built in a temporary folder and renamed into place, so a kill at any moment leaves the previous
 * checkpoint intact and never a half-written one.
 */
import { promises as fs } from 'node:fs';
import path from 'node:path';
import type * as tf from '@tensorflow/tfjs-core';
import { tensorsToArrays, arraysToTensors } from '../model/model-files.ts';
import { readSafetensors, writeSafetensors } from '../model/safetensors.ts';
import { exists, readJson, writeDirAtomic, writeJsonAtomic } from '../model/files.ts';
import type { AdamW } from './adamw.ts';

export type { TrainerState } from './trainer-state.ts';

const STEP_DIR = /^step-(\d+)$/;

export function checkpointDir(runDir: string, step: number): string {
  return path.join(runDir, 'checkpoints', `step-${String(step).padStart(8, '0')}`);
}

async function checkpointSteps(runDir: string): Promise<{ names: string[]; steps: number[] }> {
  let names: string[];
  try {
    names = await fs.readdir(path.join(runDir, 'checkpoints'));
  } catch {
    return { names: [], steps: [] };
  }
  const steps = names
    .map((n) => STEP_DIR.exec(n))
    .filter((m): m is RegExpExecArray => m !== null)
    .map((m) => Number(m[1]))
    .sort((a, b) => b - a);
  return { names, steps };
}

/** The newest complete checkpoint of a run, if any. */
export async function latestCheckpoint(runDir: string): Promise<{ dir: string; step: number } | undefined> {
  for (const step of (await checkpointSteps(runDir)).steps) {
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

/** Where a run folder can continue: its newest checkpoint and the options it was started with (run.json), when both are there. */
export async function resumePoint<T>(runDir: string): Promise<{ dir: string; step: number; options: T } | undefined> {
  const latest = await latestCheckpoint(runDir);
  const runFile = path.join(runDir, 'run.json');
  if (!latest || !(await exists(runFile))) return undefined;
  return { ...latest, options: await readJson<T>(runFile) };
}

export interface CheckpointContents {
  step: number;
  /** Written as state.json. */
  state: object;
  optimizer: AdamW;
  /** Writes the trainer's tensors into the (temporary) checkpoint folder. */
  write: (dir: string) => Promise<void>;
  /** How many checkpoints to keep, newest first (0: all). */
  keep: number;
}

/** Writes one checkpoint atomically, then drops the older ones past `keep` and any temporary folder of a killed save. */
export async function saveCheckpoint(runDir: string, c: CheckpointContents): Promise<string> {
  const dir = checkpointDir(runDir, c.step);
  await writeDirAtomic(dir, async (tmp) => {
    await c.write(tmp);
    await writeSafetensors(path.join(tmp, 'optimizer.safetensors'), tensorsToArrays(c.optimizer.stateTensors()), { step: String(c.optimizer.step) });
    await writeJsonAtomic(path.join(tmp, 'state.json'), c.state);
  });
  const { names, steps } = await checkpointSteps(runDir);
  if (c.keep > 0) for (const step of steps.slice(c.keep)) await fs.rm(checkpointDir(runDir, step), { recursive: true, force: true });
  for (const n of names) if (n.includes('.tmp-')) await fs.rm(path.join(runDir, 'checkpoints', n), { recursive: true, force: true });
  return dir;
}

/** Restores the optimizer from a checkpoint folder and returns its state.json (the trainer reads its own tensors). */
export async function loadCheckpoint<S>(dir: string, optimizer: AdamW): Promise<S> {
  const opt = await readSafetensors(path.join(dir, 'optimizer.safetensors'));
  optimizer.loadState(Number(opt.metadata.step ?? 0), arraysToTensors(opt.tensors));
  return readJson<S>(path.join(dir, 'state.json'));
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
 * The training loop's checkpoint for an adapter trainer — its trainable tensors
 * (`trainables.safetensors`), the optimizer and `state`, only the newest kept — as a spread for
 * the loop's spec: nothing without a run folder.
 */
export function trainerCheckpoints(
  runDir: string | undefined,
  every: number,
  optimizer: AdamW,
  contents: (step: number) => { state: TrainerCheckpointState; trainables: Iterable<[string, tf.Tensor]> },
): { checkpoint?: { every: number; save: (step: number) => Promise<void> } } {
  if (runDir === undefined) return {};
  const save = async (step: number) => {
    const { state, trainables } = contents(step);
    const write = (dir: string) => writeSafetensors(path.join(dir, 'trainables.safetensors'), tensorsToArrays(new Map(trainables)), { step: String(step) });
    await saveCheckpoint(runDir, { step, state, optimizer, keep: 1, write });
  };
  return { checkpoint: { every, save } };
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
  // Checked before anything is restored: a refused checkpoint leaves the optimizer untouched.
  const peek = await readJson<S>(path.join(found.dir, 'state.json'));
  if (peek.format !== expected.format) throw new Error(`${expected.what}: ${found.dir} is not a ${expected.what} checkpoint`);
  const differs = Object.keys(expected.run).filter((k) => JSON.stringify(peek.run[k]) !== JSON.stringify(expected.run[k]));
  if (differs.length) {
    throw new Error(`${expected.what}: the checkpoint in ${found.dir} was made with other settings (${differs.join(', ')}); resume with the same parameters, or train in a new run folder`);
  }
  const trainables = arraysToTensors((await readSafetensors(path.join(found.dir, 'trainables.safetensors'))).tensors);
  const state = await loadCheckpoint<S>(found.dir, optimizer);
  return { dir: found.dir, state, trainables };
}
