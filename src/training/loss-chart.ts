/** Draws training and validation loss curves to a PNG (no plotting library needed). */
import { Canvas, type RGB } from './png.ts';
import { writeFileAtomic } from '../model/files.ts';

export interface LossPoint {
  step: number;
  loss: number;
}

export interface LossChartInput {
  train: LossPoint[];
  val: LossPoint[];
  title?: string;
  /** Legend names of the two series (default TRAIN and VAL), e.g. LOSS and ACC. */
  labels?: { train?: string; val?: string };
}

const TRAIN: RGB = [31, 119, 180];
const VAL: RGB = [214, 39, 40];
const AXIS: RGB = [60, 60, 60];
const GRID: RGB = [225, 225, 225];

function niceStep(range: number, ticks: number): number {
  const raw = range / ticks;
  const pow = 10 ** Math.floor(Math.log10(raw));
  for (const m of [1, 2, 2.5, 5, 10]) if (m * pow >= raw) return m * pow;
  return 10 * pow;
}

function fmt(v: number): string {
  if (Math.abs(v) >= 1000) return `${+(v / 1000).toFixed(2)}K`;
  return `${+v.toFixed(2)}`;
}

/** Exponential moving average, for a readable train curve. */
function smooth(points: LossPoint[], alpha: number): LossPoint[] {
  let s: number | undefined;
  return points.map((p) => {
    s = s === undefined ? p.loss : alpha * p.loss + (1 - alpha) * s;
    return { step: p.step, loss: s };
  });
}

export function renderLossChart(input: LossChartInput, width = 800, height = 500): Buffer {
  const c = new Canvas(width, height);
  const left = 60;
  const right = 20;
  const top = 40;
  const bottom = 40;
  const w = width - left - right;
  const h = height - top - bottom;
  const train = smooth(input.train.filter((p) => Number.isFinite(p.loss)), input.train.length > 200 ? 0.05 : 0.3);
  const val = input.val.filter((p) => Number.isFinite(p.loss));
  const all = [...train, ...val];
  const maxStep = Math.max(1, ...all.map((p) => p.step));
  let lo = Math.min(...all.map((p) => p.loss), Infinity);
  let hi = Math.max(...all.map((p) => p.loss), -Infinity);
  if (!Number.isFinite(lo)) {
    lo = 0;
    hi = 1;
  }
  if (hi - lo < 1e-6) {
    hi += 0.5;
    lo -= 0.5;
  }
  const pad = (hi - lo) * 0.05;
  lo = Math.max(0, lo - pad);
  hi += pad;
  const X = (s: number) => left + (s / maxStep) * w;
  const Y = (l: number) => top + h - ((l - lo) / (hi - lo)) * h;

  const yStep = niceStep(hi - lo, 6);
  for (let v = Math.ceil(lo / yStep) * yStep; v <= hi; v += yStep) {
    c.line(left, Y(v), left + w, Y(v), GRID);
    c.text(4, Y(v) - 3, fmt(v), AXIS);
  }
  const xStep = niceStep(maxStep, 8);
  for (let s = 0; s <= maxStep; s += xStep) {
    c.line(X(s), top, X(s), top + h, GRID);
    const label = fmt(s);
    c.text(X(s) - label.length * 3, top + h + 8, label, AXIS);
  }
  c.line(left, top, left, top + h, AXIS);
  c.line(left, top + h, left + w, top + h, AXIS);
  c.text(left + w / 2 - 12, height - 14, 'STEP', AXIS);

  const draw = (pts: LossPoint[], color: RGB, thickness: number, dots: boolean) => {
    for (let i = 1; i < pts.length; i++) {
      c.line(X(pts[i - 1]!.step), Y(pts[i - 1]!.loss), X(pts[i]!.step), Y(pts[i]!.loss), color, thickness);
    }
    if (dots) for (const p of pts) c.rect(X(p.step) - 2, Y(p.loss) - 2, 5, 5, color);
  };
  draw(train, TRAIN, 2, train.length === 1);
  draw(val, VAL, 2, true);

  const title = input.title ?? 'LOSS';
  c.text(left, 12, title, AXIS, 2);
  const lastTrain = input.train.at(-1);
  const lastVal = val.at(-1);
  const lx = width - right - 220;
  c.rect(lx, 12, 10, 10, TRAIN);
  c.text(lx + 14, 14, `${input.labels?.train ?? 'TRAIN'} ${lastTrain ? lastTrain.loss.toFixed(3) : '-'}`, AXIS);
  c.rect(lx + 110, 12, 10, 10, VAL);
  c.text(lx + 124, 14, `${input.labels?.val ?? 'VAL'} ${lastVal ? lastVal.loss.toFixed(3) : '-'}`, AXIS);
  return c.toPNG();
}

export async function writeLossChart(file: string, input: LossChartInput): Promise<void> {
  await writeFileAtomic(file, renderLossChart(input));
}
