import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { tf, useBackend } from '../model/helpers.ts';
import { encodeChat } from '../../src/model/chat-template.ts';
import { encodeQaPrompt, fitContext, formatContext } from '../../src/model/qa-prompt.ts';
import { encodeSftExample, parseSftRecord, readSftData, type SftExample } from '../../src/training/sft/data.ts';
import { collate } from '../../src/training/sft/train.ts';
import { charTokenizer, tinyChatModel } from './helpers.ts';

const tmpRoot = await fs.mkdtemp(path.join(os.tmpdir(), 'teamllm-sft-data-'));
afterAll(() => fs.rm(tmpRoot, { recursive: true, force: true }));
const tok = charTokenizer();

describe('SFT records', () => {
  it('reads alpaca, sharegpt, exported 👍 messages and question/answer records', async () => {
    const file = path.join(tmpRoot, 'mixed.jsonl');
    const lines = [
      { instruction: 'Summarise the policy.', input: 'Leave is requested in PeopleDock.', output: 'Use PeopleDock.' },
      { instruction: 'Say hi.', input: '', output: 'Hi!', system: 'Be brief.' },
      { conversations: [{ from: 'system', value: 'Be nice.' }, { from: 'human', value: 'Hello?' }, { from: 'gpt', value: 'Hello!' }, { from: 'human', value: 'And?' }, { from: 'gpt', value: 'Bye.' }] },
      {
        messages: [{ role: 'user', content: 'How many days?' }, { role: 'assistant', content: '25 days' }],
        context: [{ source: 'en/leave.md', title: 'Leave > Annual', text: 'Full-time: 25 days.' }],
        answerId: 'a1',
        model: 'gpt@v2',
        votes: { up: 2, down: 0 },
      },
      { id: 'en-001', question: 'When?', answer: '1 July', source: 'en/leave.md', split: 'train' },
    ];
    await fs.writeFile(file, `${lines.map((l) => JSON.stringify(l)).join('\n')}\n\n`);
    const ex = await readSftData(tmpRoot);
    expect(ex.map((e) => e.format)).toEqual(['alpaca', 'alpaca', 'sharegpt', 'messages', 'qa']);
    expect(ex[0]!.messages).toEqual([
      { role: 'user', content: 'Summarise the policy.\n\nLeave is requested in PeopleDock.' },
      { role: 'assistant', content: 'Use PeopleDock.' },
    ]);
    expect(ex[1]!.messages[0]).toEqual({ role: 'system', content: 'Be brief.' });
    expect(ex[2]!.messages.map((m) => m.role)).toEqual(['system', 'user', 'assistant', 'user', 'assistant']);
    expect(ex[3]).toMatchObject({ id: 'a1', context: [{ source: 'en/leave.md', title: 'Leave > Annual', text: 'Full-time: 25 days.' }] });
    expect(ex[4]).toMatchObject({ id: 'en-001', messages: [{ role: 'user', content: 'When?' }, { role: 'assistant', content: '1 July' }] });
  });

  it('names the file and line of a bad record', async () => {
    const file = path.join(tmpRoot, 'bad', 'bad.jsonl');
    await fs.mkdir(path.dirname(file), { recursive: true });
    await fs.writeFile(file, '{"instruction":"a","output":"b"}\n{"conversations":[{"from":"alien","value":"x"}]}\n');
    await expect(readSftData(file)).rejects.toThrow(/bad\.jsonl:2: turn 1 is from "alien"/);
    await fs.writeFile(file, '{"text":"raw"}\n');
    await expect(readSftData(file)).rejects.toThrow(/bad\.jsonl:1: not an SFT record/);
    expect(() => parseSftRecord({ messages: [{ role: 'user', content: 'only a question' }] })).toThrow(/no assistant turn/);
  });
});

describe('chat template and loss mask', () => {
  const example: SftExample = {
    messages: [
      { role: 'system', content: 'Answer briefly.' },
      { role: 'user', content: 'How many days?' },
      { role: 'assistant', content: '25 days' },
      { role: 'user', content: 'And later?' },
      { role: 'assistant', content: '26 days' },
    ],
    context: [{ source: 'en/leave.md', title: 'Annual leave', text: '0-4 years: 25 days. 5-9 years: 26 days.' }],
  };

  it('encodes exactly what encodeChat encodes, context block included, and counts only assistant tokens', () => {
    const e = encodeSftExample(tok, example, { maxTokens: 512 })!;
    expect(e.truncated).toBe(false);
    const want = encodeChat(tok, example.messages, { context: formatContext(example.context!), addGenerationPrompt: false });
    expect(Array.from(e.ids)).toEqual(want);
    expect(tok.decode(e.ids)).toBe(
      '<|system|>Answer briefly.<|end|><|context|>[1] Annual leave (en/leave.md)\n0-4 years: 25 days. 5-9 years: 26 days.<|end|><|user|>How many days?<|end|><|assistant|>25 days<|end|><|user|>And later?<|end|><|assistant|>26 days<|end|>',
    );
    // Targets: the tokens that follow, only where they are the assistant's answers and their <|end|>.
    const counted = Array.from(e.targets).filter((t) => t >= 0);
    expect(tok.decode(counted)).toBe('25 days<|end|>26 days<|end|>');
    expect(e.assistantTokens).toBe(counted.length);
    for (let t = 0; t + 1 < e.ids.length; t++) if (e.targets[t]! >= 0) expect(e.targets[t]).toBe(e.ids[t + 1]);
    expect(e.targets[e.ids.length - 1]).toBe(-1);
  });

  it('the loss is the mean over assistant tokens only (prompt tokens do not count)', async () => {
    await useBackend('cpu');
    const model = tinyChatModel(tok.vocabSize, { blockSize: 256 });
    const a = encodeSftExample(tok, example, { maxTokens: 256 })!;
    const b = encodeSftExample(tok, { messages: [{ role: 'user', content: 'Hi' }, { role: 'assistant', content: 'Hello there' }] }, { maxTokens: 256 })!;
    const toBatch = (e: typeof a) => ({ ids: Array.from(e.ids), targets: Array.from(e.targets) });
    const batch = collate([toBatch(a), toBatch(b)], tok.special.end!);
    const loss = tf.tidy(() => model.loss(batch.x, batch.y).dataSync()[0]!);
    // By hand: -log p(target) at counted positions, from the logits.
    const logits = tf.tidy(() => tf.logSoftmax(model.forward(batch.x)).arraySync()) as number[][][];
    const y = batch.y.arraySync() as number[][];
    let sum = 0;
    let n = 0;
    y.forEach((row, bi) => row.forEach((t, ti) => {
      if (t >= 0) {
        sum -= logits[bi]![ti]![t]!;
        n += 1;
      }
    }));
    expect(n).toBe(a.assistantTokens + b.assistantTokens);
    expect(loss).toBeCloseTo(sum / n, 4);
    model.dispose();
  });

  it('fits the context into a small block, keeping the lines that match the question, and cuts answers last', () => {
    const passages = [
      { source: 'a.md', title: 'Travel', text: 'Book flights 14 days ahead.\nTrains are preferred under 700 km.\nHotels: up to 150 per night.' },
      { source: 'b.md', title: 'Leave', text: 'You may carry over at most 5 days.\nCarried-over days expire on 1 July.\nManagers answer within 3 days.' },
    ];
    const full = formatContext(passages);
    expect(fitContext(tok, passages, 10_000, 'x')).toBe(full);
    const fitted = fitContext(tok, passages, 70, 'When do carried-over days expire?');
    expect(tok.encode(fitted).length).toBeLessThanOrEqual(70);
    expect(fitted).toContain('[2] Leave (b.md)\n');
    expect(fitted).toContain('Carried-over days expire on 1 July.');
    expect(fitted).not.toContain('Hotels');
    const e = encodeSftExample(tok, { messages: [{ role: 'user', content: 'When do carried-over days expire?' }, { role: 'assistant', content: '1 July' }], context: passages }, { maxTokens: 120 })!;
    expect(e.ids.length).toBeLessThanOrEqual(120);
    expect(e.truncated).toBe(true);
    expect(tok.decode(e.ids)).toContain('Carried-over days expire on 1 July.');
    expect(tok.decode(Array.from(e.targets).filter((t) => t >= 0))).toBe('1 July<|end|>');
    // A too-long answer keeps its beginning; nothing fits -> dropped.
    const long = encodeSftExample(tok, { messages: [{ role: 'user', content: 'Q?' }, { role: 'assistant', content: 'x'.repeat(100) }] }, { maxTokens: 40 })!;
    expect(long.ids.length).toBe(40);
    expect(encodeSftExample(tok, { messages: [{ role: 'user', content: 'Q'.repeat(60) }, { role: 'assistant', content: 'A' }] }, { maxTokens: 40 })).toBeUndefined();
  });

  it('the answer-time prompt is the training prompt without the answer', () => {
    const passages = [{ source: 'b.md', title: 'Leave', text: 'Carried-over days expire on 1 July.' }];
    const e = encodeSftExample(tok, { messages: [{ role: 'user', content: 'When?' }, { role: 'assistant', content: '1 July' }], context: passages }, { maxTokens: 128 })!;
    const prompt = encodeQaPrompt(tok, { question: 'When?', passages }, { blockSize: 128, reserve: 16 });
    expect(Array.from(e.ids.slice(0, prompt.length))).toEqual(prompt);
    expect(tok.decode(prompt).endsWith('<|user|>When?<|end|><|assistant|>')).toBe(true);
  });
});
