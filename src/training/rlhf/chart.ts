/**
 * RLHF curves in one PNG: a grid of small panels (reward, KL, entropy, loss, QA...), each with one
 * or two series (per step, and the held-out evaluations as dots). Unlike the loss chart, values
 * may be negative (rewards, implicit-reward margins).
 */
import { Canvas, type RGB } from '../png.ts';
import { writeFileAtomic } from '../../model/files.ts';

export interface ChartPoint {
  step: number;
  value: number;
}

export interface Panel {
  title: string;
  /** Per-step values (a line). */
  line?: ChartPoint[];
  /** Evaluations (dots joined by a thinner line). */
  dots?: ChartPoint[];
  /** A horizontal reference (e.g. the KL bound or the value before training). */
  ref?: { value: number; label: string };
}

const LINE: RGB = [31, 119, 180];
const DOTS: RGB = [214, 39, 40];
const REF: RGB = [44, 160, 44];
const AXIS: RGB = [60, 60, 60];
const GRID: RGB = [225, 225, 225];

function fmt(v: number): string {
  const a = Math.abs(v);
  if (a >= 1000) return `${+(v / 1000).toFixed(1)}K`;
  if (a >= 10) return v.toFixed(0);
  if (a >= 1) return v.toFixed(1);
  return v.toFixed(2);
}

function drawPanel(c: Canvas, p: Panel, x0: number, y0: number, w: number, h: number): void {
  const left = x0 + 48;
  const top = y0 + 26;
  const pw = w - 62;
  const ph = h - 50;
  const line = (p.line ?? []).filter((q) => Number.isFinite(q.value));
  const dots = (p.dots ?? []).filter((q) => Number.isFinite(q.value));
  const all = [...line, ...dots];
  const values = [...all.map((q) => q.value), ...(p.ref && Number.isFinite(p.ref.value) ? [p.ref.value] : [])];
  let lo = values.length ? Math.min(...values) : 0;
  let hi = values.length ? Math.max(...values) : 1;
  if (hi - lo < 1e-9) {
    hi += 0.5;
    lo -= 0.5;
  }
  const pad = (hi - lo) * 0.08;
  lo -= pad;
  hi += pad;
  const maxStep = Math.max(1, ...all.map((q) => q.step));
  const X = (s: number) => left + (s / maxStep) * pw;
  const Y = (v: number) => top + ph - ((v - lo) / (hi - lo)) * ph;
  for (let i = 0; i <= 4; i++) {
    const v = lo + ((hi - lo) * i) / 4;
    c.line(left, Y(v), left + pw, Y(v), GRID);
    c.text(x0 + 4, Y(v) - 3, fmt(v), AXIS);
  }
  c.line(left, top, left, top + ph, AXIS);
  c.line(left, top + ph, left + pw, top + ph, AXIS);
  c.text(left, top + ph + 8, '0', AXIS);
  c.text(left + pw - 6 * String(maxStep).length, top + ph + 8, String(maxStep), AXIS);
  if (p.ref && Number.isFinite(p.ref.value)) {
    for (let x = left; x < left + pw; x += 8) c.line(x, Y(p.ref.value), Math.min(x + 4, left + pw), Y(p.ref.value), REF);
  }
  for (let i = 1; i < line.length; i++) c.line(X(line[i - 1]!.step), Y(line[i - 1]!.value), X(line[i]!.step), Y(line[i]!.value), LINE, 2);
  if (line.length === 1) c.rect(X(line[0]!.step) - 2, Y(line[0]!.value) - 2, 5, 5, LINE);
  for (let i = 1; i < dots.length; i++) c.line(X(dots[i - 1]!.step), Y(dots[i - 1]!.value), X(dots[i]!.step), Y(dots[i]!.value), DOTS, 1);
  for (const d of dots) c.rect(X(d.step) - 3, Y(d.value) - 3, 7, 7, DOTS);
  const last = line.at(-1) ?? dots.at(-1);
  c.text(x0 + 4, y0 + 6, `${p.title}${last ? ` ${fmt(last.value)}` : ''}`, AXIS);
  if (p.ref) c.text(left + pw - 6 * (p.ref.label.length + 1), y0 + 6, p.ref.label, REF);
}

/** Panels in a grid of `columns`, each `panelWidth` × `panelHeight` pixels. */
export function renderPanels(title: string, panels: Panel[], columns = 2, panelWidth = 420, panelHeight = 220): Buffer {
  const rows = Math.max(1, Math.ceil(panels.length / columns));
  const c = new Canvas(columns * panelWidth, rows * panelHeight + 30);
  c.text(8, 8, title, AXIS, 2);
  panels.forEach((p, i) => drawPanel(c, p, (i % columns) * panelWidth, 30 + Math.floor(i / columns) * panelHeight, panelWidth, panelHeight));
  return c.toPNG();
}

export async function writePanels(file: string, title: string, panels: Panel[]): Promise<void> {
  await writeFileAtomic(file, renderPanels(title, panels));
}
