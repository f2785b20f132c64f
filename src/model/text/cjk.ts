/**
 * What counts as a Chinese character wherever text is measured, cut or searched (the prompt's
 * context fitting, retrieval terms, the encoder's features, the evaluations, the answer language):
 * the CJK Unified Ideographs with Extension A, and the compatibility ideographs. One definition,
 * so a question and a document are split the same way by every part. It lives in the model layer
 * because the prompt layout (model) needs it and every layer above may import the model.
 *
 * The tokenizer's pre-tokenizer (tokenizer/pretokenize.ts) keeps its own Unicode-script classes
 * (Han, Hiragana, Katakana): changing them would change trained tokenizers' ids.
 */
export const CJK_RANGES = '\\u3400-\\u9fff\\uf900-\\ufaff';

/** One Chinese character anywhere in the text (not global: safe to `.test`). */
export const CJK = new RegExp(`[${CJK_RANGES}]`, 'u');

/** Runs of Chinese characters. Global: for `matchAll` and `replace` only (`.test` would keep state). */
export const CJK_RUN = new RegExp(`[${CJK_RANGES}]+`, 'gu');

/** Whether the text has a Chinese character (answers and prompts switch language on it). */
export function hasCjk(text: string): boolean {
  return CJK.test(text);
}
