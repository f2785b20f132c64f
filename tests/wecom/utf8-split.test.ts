import { describe, expect, it } from 'vitest';
import { splitUtf8 } from '../../src/adapters/wecom/index.ts';

const LONE_SURROGATE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/;
const bytes = (s: string) => Buffer.byteLength(s, 'utf8');

describe('splitUtf8', () => {
  it('leaves text within the limit alone', () => {
    expect(splitUtf8('短消息 short', 2048)).toEqual(['短消息 short']);
    expect(splitUtf8('', 2048)).toEqual([]);
  });

  it('counts Chinese as 3 bytes a character and never cuts one', () => {
    const text = '年'.repeat(1000); // 3000 bytes, no boundary to prefer
    const pieces = splitUtf8(text, 2048);
    expect(pieces.map(bytes)).toEqual([2046, 954]);
    expect(pieces.join('')).toBe(text);
  });

  it('keeps emoji (4 bytes, two UTF-16 units) whole', () => {
    const text = '👍'.repeat(600);
    const pieces = splitUtf8(text, 2048);
    for (const p of pieces) {
      expect(bytes(p)).toBeLessThanOrEqual(2048);
      expect(p).not.toMatch(LONE_SURROGATE);
    }
    expect(pieces.join('')).toBe(text);
  });

  it('prefers a paragraph, then a line, then a sentence boundary', () => {
    const para = `${'甲'.repeat(400)}\n\n${'乙'.repeat(400)}`;
    expect(splitUtf8(para, 2048)[0]).toBe(`${'甲'.repeat(400)}\n\n`);
    const sentences = '这是第一句话，内容比较长。'.repeat(100);
    for (const p of splitUtf8(sentences, 2048).slice(0, -1)) expect(p.endsWith('。')).toBe(true);
    const words = 'lorem ipsum dolor '.repeat(200);
    for (const p of splitUtf8(words, 2048).slice(0, -1)) expect(p.endsWith(' ')).toBe(true);
  });

  it('holds for mixed scripts at any limit (seeded random cases)', () => {
    const alphabet = ['a', ' ', '\n', 'é', '中', '。', '👍', '🇨🇳', 'ß', '，'];
    let seed = 42;
    const rand = (n: number) => ((seed = (seed * 1103515245 + 12345) % 2 ** 31), seed % n);
    for (let round = 0; round < 200; round++) {
      const text = Array.from({ length: rand(300) }, () => alphabet[rand(alphabet.length)]).join('');
      const max = 4 + rand(60);
      const pieces = splitUtf8(text, max);
      expect(pieces.join('')).toBe(text);
      for (const p of pieces) {
        expect(p.length).toBeGreaterThan(0);
        expect(bytes(p)).toBeLessThanOrEqual(max);
        expect(p).not.toMatch(LONE_SURROGATE);
      }
    }
  });
});
