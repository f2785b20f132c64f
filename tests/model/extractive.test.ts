import { describe, expect, it } from 'vitest';
import { tinyModel, useBackend } from './helpers.ts';
import { ExtractiveConstraint, extractiveHook, headerLineRanges, isSpanStart } from '../../src/model/extractive.ts';
import { generateAll } from '../../src/model/generate.ts';
import { encodeChat } from '../../src/model/chat-template.ts';
import { CharTokenizer } from '../../src/model/tokenizer/char.ts';
import { trainBpe } from '../../src/model/tokenizer/index.ts';
import { formatContext, encodeQaPrompt } from '../../src/model/qa-prompt.ts';

const LATIN = 'The office opens at 9. Lunch is at noon!\n- Parking costs **5 euros** per day.\nAsk Anna first';
const CJK = '年假每年二十天。病假需要证明！\n出差报销在三十天内提交';
const passages = [
  { source: 'en/office.md', title: 'Office', text: LATIN },
  { source: 'zh/leave.md', title: '假期', text: CJK },
];
const contextText = formatContext(passages);
const chars = CharTokenizer.fromText(`${contextText}[]()0123456789 abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ?`, { specialTokens: true });
const bpe = trainBpe([`${contextText}\n${contextText}\nThe office is open. 年假二十天。`.repeat(20)], { vocabSize: 420 });

/** The texts a constraint lets an answer start with: each start position's token onwards to its clause end. */
function startTexts(c: ExtractiveConstraint, decode: (ids: number[]) => string): string[] {
  const out: string[] = [];
  c.start.forEach((s, j) => {
    if (!s) return;
    let k = j;
    while (!c.end[k]) k++;
    out.push(decode(c.tokens.slice(j, k + 1) as number[]));
  });
  return out;
}

describe('extractive constraint', () => {
  it('finds the header lines of a formatted context (numbered, after a blank line) and nothing else', () => {
    const ranges = headerLineRanges(contextText);
    expect(ranges.map(([s, e]) => contextText.slice(s, e))).toEqual(['[1] Office (en/office.md)\n', '[2] 假期 (zh/leave.md)\n']);
    // "[3]" inside a passage's text (not after a blank line) is text, not a header.
    expect(headerLineRanges('[1] A\nsee [3] below\n[2] not after a blank line')).toHaveLength(1);
  });

  it('span starts: line starts, Latin sentence starts after . ! ? and a space, CJK sentence starts after 。！？', () => {
    const t = 'One. Two! Three? x.y 第一。第二！第三\nFour';
    const starts = [...t].map((_, i) => i).filter((i) => isSpanStart(t, i));
    expect(starts.map((i) => t.slice(i, i + 2))).toEqual(['On', ' T', 'Tw', ' T', 'Th', ' x', 'x.', '第二', '第三', 'Fo']);
    expect(isSpanStart(t, t.indexOf('y'))).toBe(false); // "x.y": no space after the dot
  });

  for (const [name, tok] of [
    ['character', chars],
    ['BPE', bpe],
  ] as const) {
    it(`allows exactly the tokens at span starts, never header tokens (${name} tokenizer, Latin and CJK)`, () => {
      const prompt = encodeChat(tok, [{ role: 'user', content: 'When does the office open?' }], { context: contextText });
      const c = ExtractiveConstraint.fromPrompt(tok, prompt, { starts: 'sentence' })!;
      expect(tok.decode(c.tokens as number[])).toBe(contextText); // the prompt's own tokens
      const decode = (ids: number[]) => tok.decode(ids);
      // Starts: each line / sentence, list markup skipped; nothing from the headers.
      expect(startTexts(c, decode).map((s) => s.trimStart())).toEqual(['The office opens at 9', 'Lunch is at noon', 'Parking costs **5 euros** per day', 'Ask Anna first', '年假每年二十天', '病假需要证明', '出差报销在三十天内提交']);
      // Not copyable: exactly the header lines.
      expect(decode(c.tokens.filter((_, j) => !c.copyable[j]) as number[])).toBe('[1] Office (en/office.md)\n[2] 假期 (zh/leave.md)\n');
      // The first step: the tokens at starts, and no end token yet.
      const first = c.allowed([]);
      const startIds = new Set(c.tokens.filter((_, j) => c.start[j]));
      expect(first).toEqual(startIds);
      expect(first.has(tok.special.end!)).toBe(false);
      // Following "The office", the only continuation is the next context token; no end mid-clause.
      const prefix = tok.encode('The office');
      const i = c.tokens.findIndex((_, j) => c.start[j] && decode(c.tokens.slice(j, j + prefix.length) as number[]) === 'The office');
      expect(i).toBeGreaterThanOrEqual(0);
      const next = c.allowed(c.tokens.slice(i, i + prefix.length));
      expect(next).toEqual(new Set([c.tokens[i + prefix.length]]));
      // At a clause end the end token is allowed too.
      const whole = tok.encode('The office opens at 9.');
      expect(c.allowed(whole).has(tok.special.end!)).toBe(true);
      // A token that continues no span: nothing but the end.
      expect(c.allowed([...tok.encode('The office'), tok.encode('?')[0]!])).toEqual(new Set([tok.special.end]));
      // Header text is never a start, even where it matches a line of text.
      expect([...first].some((id) => decode([id]).startsWith('['))).toBe(false);
    });

    it(`by default also starts at any word, still never in a header (${name} tokenizer)`, () => {
      const prompt = encodeChat(tok, [{ role: 'user', content: 'When does the office open?' }], { context: contextText });
      const c = ExtractiveConstraint.fromPrompt(tok, prompt)!;
      const sentenceOnly = ExtractiveConstraint.fromPrompt(tok, prompt, { starts: 'sentence' })!;
      const decode = (ids: number[]) => tok.decode(ids);
      const starts = startTexts(c, decode).map((s) => s.trimStart());
      // Every sentence start is still one, and mid-sentence words now are too ("5 euros per day", "opens at 9").
      for (const s of startTexts(sentenceOnly, decode).map((x) => x.trimStart())) expect(starts).toContain(s);
      expect(starts.some((s) => s.startsWith('opens at 9'))).toBe(true);
      expect(starts.some((s) => s.startsWith('5 euros'))).toBe(true);
      for (let j = 0; j < c.tokens.length; j++) if (c.start[j]) expect(c.copyable[j]).toBe(true);
      // "opens at 9." is a verbatim span and may end at the clause end.
      expect(c.allowed(tok.encode(' opens at 9.')).has(tok.special.end!)).toBe(true);
    });
  }

  it('tracks all matching positions (a repeated prefix) and advances incrementally or from scratch alike', () => {
    const ctx = formatContext([{ text: 'Pay by card. Pay by cash on Fridays.' }]);
    const prompt = encodeChat(chars, [{ role: 'user', content: 'how?' }], { context: ctx });
    const c = ExtractiveConstraint.fromPrompt(chars, prompt)!;
    const gen = chars.encode('Pay by ca');
    for (let n = 1; n <= gen.length; n++) c.allowed(gen.slice(0, n)); // incremental
    expect(c.positions(gen)).toHaveLength(2);
    const fresh = ExtractiveConstraint.fromPrompt(chars, prompt)!;
    expect(fresh.allowed(gen)).toEqual(c.allowed(gen)); // from scratch
    expect(c.allowed(gen)).toEqual(new Set(chars.encode('rs')));
  });

  it('end at any token when asked (ends: any), and no constraint without a context block', () => {
    const prompt = encodeChat(chars, [{ role: 'user', content: 'when?' }], { context: contextText });
    const c = ExtractiveConstraint.fromPrompt(chars, prompt, { ends: 'any' })!;
    expect(c.allowed(chars.encode('Th')).has(chars.special.end!)).toBe(true);
    expect(extractiveHook(chars, encodeChat(chars, [{ role: 'user', content: 'when?' }]))).toBeUndefined();
    // A context of headers only: nothing may be generated.
    const headersOnly = ExtractiveConstraint.fromPrompt(chars, encodeChat(chars, [{ role: 'user', content: 'when?' }], { context: '[1] Office (en/office.md)' }))!;
    expect(headersOnly.allowed([]).size).toBe(0);
  });

  it('every constrained generation is a verbatim span of the context, from a span start, never header text', async () => {
    await useBackend('wasm');
    const config = { vocabSize: bpe.vocabSize, blockSize: 160, nLayer: 1, nHead: 2, nEmbd: 16, dropout: 0, bias: true };
    const model = tinyModel(config, 3, 0.5);
    const prompt = encodeQaPrompt(bpe, { question: 'When does the office open?', passages }, { blockSize: 160, reserve: 24 });
    const c = ExtractiveConstraint.fromPrompt(bpe, prompt)!;
    const starts = startTexts(c, (ids) => bpe.decode(ids)).map((s) => s.trimStart().slice(0, 2));
    const body = passages.map((p) => p.text).join('\n');
    for (let seed = 1; seed <= 12; seed++) {
      const hook = extractiveHook(bpe, prompt)!;
      const r = await generateAll(model, bpe, prompt, { maxTokens: 24, temperature: 1.5, seed, allowedTokens: hook });
      expect(r.tokens.length).toBeGreaterThan(0);
      expect(contextText.includes(r.text)).toBe(true);
      expect(body.includes(r.text.trimEnd())).toBe(true); // not from a header line
      expect(starts).toContain(r.text.trimStart().slice(0, 2));
    }
    model.dispose();
  });
});
