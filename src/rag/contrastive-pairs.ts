import type { Random } from '../model/random.ts';
import { hasCjk } from '../model/text/cjk.ts';

/** A passage of the corpus as the encoder's training sees it. */
export interface TrainingPassage {
  source: string;
  /** Heading path, e.g. "Leave and holidays > Sick leave". */
  title: string;
  text: string;
  position: number;
}

export type PairKind = 'sentence' | 'heading' | 'neighbour' | 'asked';

/** A question someone asked and the passage (index into the corpus) whose answer they liked. */
export interface AskedPair {
  query: string;
  passage: number;
}

/** A (query-like text, passage) pair that should embed close together; `passage` is an index into the corpus. */
export interface ContrastivePair {
  kind: PairKind;
  query: string;
  positive: string;
  passage: number;
}

const SENTENCE = /[^。！？；.!?\n]+[。！？；.!?]*/g;

/** Sentences long enough to stand for a question (a bare list marker or "Yes." teaches nothing). */
export function sentencesOf(text: string): string[] {
  return (text.match(SENTENCE) ?? [])
    .map((s) => s.replace(/^[\s>*#|-]+/, '').replace(/\*\*|__|\|/g, ' ').trim())
    .filter((s) => (hasCjk(s) ? s.length >= 6 : s.split(/\s+/).length >= 4));
}

/**
 * Self-supervised pairs mined from the corpus itself — there are no labelled questions for a
 * company's documents:
 *
 * - sentence: one sentence against the rest of its passage (the "inverse cloze task" of Lee et
 *   al. 2019, ORQA): a sentence is the closest thing to a question that a document contains, and
 *   removing it forces the match through related words rather than the identical sentence;
 * - heading: a section's heading path against its text (what the passage is about);
 * - neighbour: a sentence of the next or previous passage of the same document (topical
 *   continuity, so passages of one section cluster);
 * - asked: a question an employee asked, in their words, against the passage of an answer they
 *   liked (not mined: learned from the 👍 votes, when there are any).
 *
 * One batch never holds two pairs of the same passage or heading: the other pairs of a batch are
 * its negatives, and a duplicate would be a negative that is really a positive.
 */
export class PairSampler {
  private readonly sentences: string[][];
  private readonly bySource = new Map<string, number[]>();

  constructor(
    private readonly passages: TrainingPassage[],
    private readonly random: Random,
    /** Questions people asked, against the passages that answered them (votes: training/feedback-datasets.ts). */
    private readonly asked: readonly AskedPair[] = [],
    /** The share of each batch they fill (the rest is mined from the corpus, so the documents' own links stay). */
    private readonly askedShare = 0.25,
  ) {
    this.sentences = passages.map((p) => sentencesOf(p.text));
    passages.forEach((p, i) => {
      const list = this.bySource.get(p.source) ?? [];
      list.push(i);
      this.bySource.set(p.source, list);
    });
    for (const list of this.bySource.values()) list.sort((a, b) => passages[a]!.position - passages[b]!.position);
  }

  batch(size: number): ContrastivePair[] {
    const n = this.passages.length;
    const order = [...Array(n).keys()];
    // Partial Fisher-Yates: the first `size` entries are a uniform sample without repeats.
    for (let i = 0; i < Math.min(size, n); i++) {
      const j = i + this.random.int(n - i);
      [order[i], order[j]] = [order[j]!, order[i]!];
    }
    const headings = new Set<string>();
    const pairs: ContrastivePair[] = [];
    const taken = new Set<number>();
    // The askers' words are the one thing the corpus cannot teach: "grandma passed away" is how an
    // employee asks for the bereavement rule. Without votes this draws nothing (same batches as before).
    for (let i = 0; i < Math.round(size * this.askedShare) && this.asked.length; i++) {
      const a = this.asked[this.random.int(this.asked.length)]!;
      if (taken.has(a.passage)) continue;
      taken.add(a.passage);
      const p = this.passages[a.passage]!;
      pairs.push({ kind: 'asked', query: a.query, positive: `${p.title}\n${p.text}`, passage: a.passage });
    }
    for (const index of order.slice(0, size)) {
      if (pairs.length >= size) break;
      if (taken.has(index)) continue;
      const pair = this.pairFor(index, headings);
      if (pair) pairs.push(pair);
    }
    return pairs;
  }

  private pairFor(index: number, headings: Set<string>): ContrastivePair | undefined {
    const p = this.passages[index]!;
    const sentences = this.sentences[index]!;
    const roll = this.random.uniform();
    if (roll < 0.2 && !headings.has(p.title)) {
      headings.add(p.title);
      return { kind: 'heading', query: p.title, positive: p.text, passage: index };
    }
    if (roll < 0.4) {
      const neighbour = this.neighbourSentence(index);
      if (neighbour) return { kind: 'neighbour', query: neighbour, positive: `${p.title}\n${p.text}`, passage: index };
    }
    if (sentences.length >= 2) {
      const sentence = sentences[this.random.int(sentences.length)]!;
      // Sometimes keep the sentence in: real questions do share words with their passage.
      const rest = this.random.uniform() < 0.1 ? p.text : p.text.replace(sentence, ' ');
      return { kind: 'sentence', query: sentence, positive: `${p.title}\n${rest}`, passage: index };
    }
    if (headings.has(p.title)) return undefined;
    headings.add(p.title);
    return { kind: 'heading', query: p.title, positive: p.text, passage: index };
  }

  private neighbourSentence(index: number): string | undefined {
    const p = this.passages[index]!;
    const siblings = this.bySource.get(p.source)!;
    const at = siblings.indexOf(index);
    const candidates = [siblings[at - 1], siblings[at + 1]].filter((i): i is number => i !== undefined);
    if (candidates.length === 0) return undefined;
    const other = this.sentences[candidates[this.random.int(candidates.length)]!]!;
    return other.length > 0 ? other[this.random.int(other.length)] : undefined;
  }
}
