import type { BotStore, RatedAnswer, Source } from '../core/index.ts';

export type ExportKind = 'sft' | 'preference' | 'kto';
export const EXPORT_KINDS: ExportKind[] = ['sft', 'preference', 'kto'];

/** Passages as they go into datasets: what the model saw, without retrieval scores. */
function context(passages: Source[]) {
  return passages.map((p) => ({ source: p.source, title: p.title, text: p.text }));
}

/** Same question asked twice counts as one prompt, whatever the spacing or case. */
export function questionKey(question: string): string {
  return question.normalize('NFKC').toLowerCase().replace(/\s+/g, ' ').replace(/[?？!！.。]+$/u, '').trim();
}

function net(r: RatedAnswer): number {
  return r.up - r.down;
}

/**
 * Datasets from the answer records and their votes, one JSON object per line:
 * - `sft`: answers liked more than disliked, as chat messages (`messages`) plus the passages;
 * - `kto`: every answer with a net vote, labelled true (👍) or false (👎), as TRL's KTO reads it;
 * - `preference`: for a question with both a liked and a disliked answer, `{prompt, chosen, rejected}`.
 * Each line names the model that wrote the answer, so a trainer can filter (e.g. retrieval-only quotes).
 */
export async function* exportDataset(store: BotStore, kind: ExportKind): AsyncIterable<Record<string, unknown>> {
  const rated: RatedAnswer[] = [];
  for await (const r of store.ratedAnswers()) {
    if (net(r) !== 0) rated.push(r);
  }
  if (kind === 'sft') {
    for (const r of rated.filter((x) => net(x) > 0)) {
      yield {
        messages: [
          { role: 'user', content: r.answer.question },
          { role: 'assistant', content: r.answer.output },
        ],
        context: context(r.answer.passages),
        answerId: r.answer.id,
        model: `${r.answer.modelName}@${r.answer.modelVersion}`,
        votes: { up: r.up, down: r.down },
      };
    }
    return;
  }
  if (kind === 'kto') {
    for (const r of rated) {
      yield {
        prompt: r.answer.question,
        completion: r.answer.output,
        label: net(r) > 0,
        context: context(r.answer.passages),
        answerId: r.answer.id,
        model: `${r.answer.modelName}@${r.answer.modelVersion}`,
      };
    }
    return;
  }
  const byQuestion = new Map<string, RatedAnswer[]>();
  for (const r of rated) {
    const key = questionKey(r.answer.question);
    byQuestion.set(key, [...(byQuestion.get(key) ?? []), r]);
  }
  for (const group of byQuestion.values()) {
    const liked = group.filter((r) => net(r) > 0).sort((a, b) => net(b) - net(a));
    const disliked = group.filter((r) => net(r) < 0).sort((a, b) => net(a) - net(b));
    for (const chosen of liked) {
      for (const rejected of disliked) {
        yield {
          prompt: chosen.answer.question,
          chosen: chosen.answer.output,
          rejected: rejected.answer.output,
          context: context(chosen.answer.passages),
          chosenId: chosen.answer.id,
          rejectedId: rejected.answer.id,
        };
      }
    }
  }
}
