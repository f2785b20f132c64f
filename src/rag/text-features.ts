/**
 * What the embedding encoder reads: a text turned into hashed feature ids. A vocabulary-free
 * "hashing trick" (as fastText and Vowpal Wabbit do) means the model file carries no word list,
 * and a word the corpus never had is still embedded through the character trigrams it shares
 * with words it did have.
 *
 * - Latin-script words give the word itself plus its character trigrams with boundary marks
 *   ("<re", "ref", ...), so "referred" and "referral" share most of their features.
 * - Chinese gives each character and each character bigram: no word segmenter has to agree
 *   between how a question and a document are cut.
 */
import { CJK_RUN } from '../model/text/cjk.ts';

const segmenter = new Intl.Segmenter('en', { granularity: 'word' });

/** Feature id 0 is padding; real features hash into 1..buckets-1. */
export const PADDING = 0;

export interface FeatureOptions {
  buckets: number;
  /** Character n-grams of Latin words (0 turns them off). */
  subwordN: number;
}

/** 32-bit FNV-1a: fast, stable across platforms and versions (the ids are stored in model files). */
export function fnv1a(text: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < text.length; i++) {
    h ^= text.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  return h >>> 0;
}

function bucket(feature: string, buckets: number): number {
  return 1 + (fnv1a(feature) % (buckets - 1));
}

/** The raw feature strings of a text, in reading order (tests and debugging read these). */
export function featureStrings(text: string, subwordN = 3): string[] {
  const normalized = text.normalize('NFKC').toLowerCase();
  const out: string[] = [];
  for (const { segment, isWordLike } of segmenter.segment(normalized.replace(CJK_RUN, ' '))) {
    if (!isWordLike) continue;
    out.push(`w:${segment}`);
    if (subwordN > 0 && segment.length > subwordN && !/^\d+$/.test(segment)) {
      const marked = `<${segment}>`;
      for (let i = 0; i + subwordN <= marked.length; i++) out.push(`g:${marked.slice(i, i + subwordN)}`);
    }
  }
  for (const [run] of normalized.matchAll(CJK_RUN)) {
    const chars = [...run];
    for (let i = 0; i < chars.length; i++) {
      out.push(`c:${chars[i]}`);
      if (i + 1 < chars.length) out.push(`b:${chars[i]}${chars[i + 1]}`);
    }
  }
  return out;
}

/** Hashed feature ids of a text, at most `maxFeatures` (long passages keep their beginning). */
export function featureIds(text: string, options: FeatureOptions, maxFeatures = Infinity): number[] {
  const ids: number[] = [];
  for (const f of featureStrings(text, options.subwordN)) {
    if (ids.length >= maxFeatures) break;
    ids.push(bucket(f, options.buckets));
  }
  return ids;
}
