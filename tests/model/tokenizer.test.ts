import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { trainTokenizer } from '../../src/training/train-tokenizer.ts';
import { CharTokenizer, BpeTokenizer, loadTokenizer, saveTokenizer, trainBpe } from '../../src/model/tokenizer/index.ts';
import { encodeChat } from '../../src/model/chat-template.ts';

const corpus = await fs.readFile(new URL('./fixtures/corpus.txt', import.meta.url), 'utf8');
const tok = await trainTokenizer({ text: corpus.repeat(3), vocabSize: 600 });
const mixed = '我们公司的年假政策是什么？Annual leave: 25 days. 表情 😀👍🏽🎉 — naïve café, 日本語テキスト, 한국어.\n\tTabs  and  spaces\r\n';

describe('byte-level BPE tokenizer', () => {
  it('round-trips Chinese, English and emoji with no unknown tokens', () => {
    for (const text of [mixed, corpus, '', ' ', '😀', '\u0000\uFFFF', 'a'.repeat(5000), '公司'.repeat(500)]) {
      const ids = tok.encode(text);
      for (const id of ids) expect(id >= 0 && id < tok.vocabSize).toBe(true);
      expect(tok.decode(ids)).toBe(text);
    }
  });

  it('learns sensible merges: frequent Chinese words and English words become single tokens', () => {
    const vocab = tok.toJSON().vocab!;
    expect(tok.vocabSize).toBe(600);
    expect(vocab).toContain('年假');
    expect(vocab).toContain(' the');
    for (const word of ['年假', '春节', '公司', ' leave']) expect(tok.encode(word).length, word).toBe(1);
    // Fewer tokens than UTF-8 bytes, even with a 600-token vocabulary shared with English.
    const zh = corpus.slice(corpus.indexOf('## 春节'));
    expect(tok.encode(zh).length).toBeLessThan(Buffer.byteLength(zh) * 0.6);
  });

  it('encodes special tokens only when allowed', () => {
    const text = '<|user|>hi<|end|>';
    const plain = tok.encode(text);
    expect(plain).not.toContain(tok.special.user);
    expect(tok.decode(plain)).toBe(text);
    const special = tok.encode(text, { allowSpecial: true });
    expect(special[0]).toBe(tok.special.user);
    expect(special.at(-1)).toBe(tok.special.end);
    expect(tok.decode(special)).toBe(text);
    expect(tok.isSpecial(tok.special.assistant!)).toBe(true);
  });

  it('stream-decodes token by token, holding back split UTF-8 characters', () => {
    const ids = tok.encode(mixed);
    const dec = tok.streamDecoder();
    let out = '';
    for (const id of ids) {
      const piece = dec.push(id);
      expect(piece.includes('\uFFFD')).toBe(false);
      out += piece;
    }
    out += dec.flush();
    expect(out).toBe(mixed);
  });

  it('saves to an inspectable file and loads back to identical encodings', async () => {
    const file = path.join(await fs.mkdtemp(path.join(os.tmpdir(), 'teamllm-tok-')), 'tokenizer.json');
    await saveTokenizer(tok, file);
    const json = JSON.parse(await fs.readFile(file, 'utf8'));
    expect(json.type).toBe('bpe');
    expect(json.vocab[tok.encode('年假')[0]!]).toBe('年假');
    const loaded = await loadTokenizer(file);
    expect(loaded.encode(mixed)).toEqual(tok.encode(mixed));
    expect(loaded.special).toEqual(tok.special);
  });

  it('merges long chunks (heap path) exactly like short ones', () => {
    const t = trainBpe(['abababab abcabc ' .repeat(50)], { vocabSize: 270, specialTokens: false }) as BpeTokenizer;
    const long = 'ab'.repeat(100) + 'c';
    const bytes = new TextEncoder().encode(long);
    const viaHeap = t.encodeChunk(bytes);
    // The same text in pieces short enough for the simple path, then re-merged, must agree with a
    // direct simulation of BPE.
    let ids = Array.from(bytes);
    for (let rank = 0; rank < t.merges.length; rank++) {
      const [a, b] = t.merges[rank]!;
      const next: number[] = [];
      for (let i = 0; i < ids.length; i++) {
        if (i + 1 < ids.length && ids[i] === a && ids[i + 1] === b) {
          next.push(256 + rank);
          i++;
        } else next.push(ids[i]!);
      }
      ids = next;
    }
    expect(viaHeap).toEqual(ids);
  });

  it('encodes megabytes of text in one call, exactly as piece by piece', () => {
    // Speed (MB/s) is measured by `npm run bench -- tokenizer`, not here: a loaded CI machine has none to spare.
    const piece = corpus + mixed;
    const big = piece.repeat(Math.ceil(2e6 / corpus.length));
    const ids = tok.encode(big);
    expect(tok.decode(ids)).toBe(big);
    // Each copy ends with a line break, where a pre-tokenizer chunk ends: every copy encodes alike.
    const one = tok.encode(piece);
    expect(ids.length).toBe(one.length * (big.length / piece.length));
    expect(ids.slice(-one.length)).toEqual(one);
  });
});

describe('character tokenizer', () => {
  it('uses the sorted characters of the text (nanoGPT shakespeare_char)', () => {
    const t = CharTokenizer.fromText('hello world');
    expect(t.vocabSize).toBe(8);
    expect(t.decode(t.encode('hello'))).toBe('hello');
    expect(() => t.encode('z')).toThrow(/not in this character-level vocabulary/);
    const withSpecial = CharTokenizer.fromText('abc', { specialTokens: true });
    expect(withSpecial.vocabSize).toBe(8);
    expect(withSpecial.encode('<|end|>', { allowSpecial: true })).toEqual([withSpecial.special.end]);
  });
});

describe('chat template', () => {
  it('wraps turns in role and end tokens, puts context first and ends with <|assistant|>', () => {
    const ids = encodeChat(tok, [{ role: 'system', content: 'Be brief.' }, { role: 'user', content: '年假几天？' }], { context: '年假 15 天' });
    const s = tok.special;
    expect(ids[0]).toBe(s.system);
    expect(ids.at(-1)).toBe(s.assistant);
    expect(ids.filter((i) => i === s.end).length).toBe(3);
    expect(ids.indexOf(s.context!)).toBeLessThan(ids.indexOf(s.user!));
    expect(tok.decode(ids)).toBe('<|system|>Be brief.<|end|><|context|>年假 15 天<|end|><|user|>年假几天？<|end|><|assistant|>');
    // User text cannot forge markers.
    const forged = encodeChat(tok, [{ role: 'user', content: '<|assistant|>' }]);
    expect(forged.filter((i) => i === s.assistant).length).toBe(1);
  });

  it('fits a token budget by cutting context, then old turns', () => {
    const messages = Array.from({ length: 10 }, (_, i) => ({ role: (i % 2 ? 'assistant' : 'user') as 'user' | 'assistant', content: `message number ${i} with some words` }));
    const ids = encodeChat(tok, [{ role: 'system', content: 'sys' }, ...messages], { context: 'x '.repeat(200), maxTokens: 60 });
    expect(ids.length).toBeLessThanOrEqual(60);
    expect(ids[0]).toBe(tok.special.system);
    expect(tok.decode(ids)).toContain('message number 9');
  });
});
