/**
 * Question sets for a promotion gate, in the formats the project meets: examples/handbook's
 * `{question, answer, source?, split?}` and the development sets' `{question, answer, must_contain,
 * source, split}` (../shared/data/devsets). A row needs `question` and `answer` or `must_contain`.
 * Rows whose answer is "UNANSWERABLE" are left out: the QA gate scores facts found, not refusals.
 * With `must_contain`, the gold answer is its one fact (the gate's exact match and contains-gold
 * then look for that fact rather than for the reference sentence); several are joined with spaces
 * only when there is no reference answer.
 */
import { promises as fs } from 'node:fs';
import type { QaQuestion } from '../eval/qa-eval.ts';

export interface GateQuestions {
  questions: QaQuestion[];
  /** Rows left out because they are unanswerable. */
  unanswerable: number;
}

export async function readGateQuestions(file: string): Promise<GateQuestions> {
  const questions: QaQuestion[] = [];
  let unanswerable = 0;
  const lines = (await fs.readFile(file, 'utf8')).split(/\r?\n/);
  for (const [i, line] of lines.entries()) {
    if (!line.trim()) continue;
    let row: Record<string, unknown>;
    try {
      row = JSON.parse(line) as Record<string, unknown>;
    } catch (err) {
      throw new Error(`${file}:${i + 1}: not JSON (${(err as Error).message})`);
    }
    const mustContain = Array.isArray(row.must_contain) ? row.must_contain.filter((s): s is string => typeof s === 'string' && s.trim() !== '') : [];
    const answer = typeof row.answer === 'string' ? row.answer : undefined;
    if (typeof row.question !== 'string' || !row.question.trim()) throw new Error(`${file}:${i + 1}: needs "question"`);
    if (answer === undefined && mustContain.length === 0) throw new Error(`${file}:${i + 1}: needs "answer" or "must_contain"`);
    if (answer?.trim().toUpperCase() === 'UNANSWERABLE') {
      unanswerable += 1;
      continue;
    }
    const gold = mustContain.length === 1 ? mustContain[0]! : (answer ?? mustContain.join(' '));
    questions.push({
      question: row.question,
      answer: gold,
      ...(typeof row.id === 'string' ? { id: row.id } : {}),
      ...(typeof row.lang === 'string' ? { lang: row.lang } : {}),
      ...(typeof row.source === 'string' && row.source ? { source: row.source } : {}),
      ...(typeof row.split === 'string' ? { split: row.split } : {}),
    });
  }
  return { questions, unanswerable };
}
