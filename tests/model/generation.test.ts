import { describe, expect, it } from 'vitest';
import { tf, useBackend, tinyModel } from './helpers.ts';
import { generate, generateAll, type GeneratedToken } from '../../src/model/generate.ts';
import { CharTokenizer } from '../../src/model/tokenizer/char.ts';
import { sampleToken, applyRepetitionPenalty } from '../../src/model/sampling.ts';
import { Random } from '../../src/model/random.ts';
import { GPT } from '../../src/model/gpt.ts';
import { encodeChat } from '../../src/model/chat-template.ts';
import { extractiveHook } from '../../src/model/extractive.ts';

const tokenizer = CharTokenizer.fromText('abcdefghijklmnopqrstuvwxyz .', { specialTokens: true });
const config = { vocabSize: tokenizer.vocabSize, blockSize: 24, nLayer: 2, nHead: 2, nEmbd: 16, dropout: 0, bias: true };

describe.each(['wasm', 'cpu'] as const)('generation on %s', (backend) => {
  it('cached and uncached generation produce the same tokens (greedy and sampled)', async () => {
    await useBackend(backend);
    const model = tinyModel(config, 21, 0.4);
    const prompt = tokenizer.encode('hello world');
    for (const opts of [{ temperature: 0 }, { temperature: 1, topK: 10, topP: 0.9, seed: 5 }, { temperature: 0.7, repetitionPenalty: 1.3, seed: 9 }]) {
      const common = { maxTokens: config.blockSize - prompt.length, stopAtEnd: false, ...opts };
      const cached = await generateAll(model, tokenizer, prompt, { ...common, useCache: true });
      const uncached = await generateAll(model, tokenizer, prompt, { ...common, useCache: false });
      expect(cached.tokens.length).toBe(common.maxTokens);
      expect(cached.tokens).toEqual(uncached.tokens);
    }
    model.dispose();
  });

  it('cached and uncached generation produce the same tokens under an allowedTokens mask (extractive decoding)', async () => {
    await useBackend(backend);
    const chat = CharTokenizer.fromText('abcdefghijklmnopqrstuvwxyz .?[]()1\n', { specialTokens: true });
    const cfg = { ...config, vocabSize: chat.vocabSize, blockSize: 96 };
    const model = tinyModel(cfg, 21, 0.4);
    const context = '[1] t (s)\nthe cat sat on a mat. a dog ran far.\nbirds fly high';
    const prompt = encodeChat(chat, [{ role: 'user', content: 'who sat?' }], { context });
    let masked = 0;
    for (const opts of [{ temperature: 0 }, { temperature: 1.5, topK: 10, seed: 5 }, { temperature: 1, repetitionPenalty: 1.3, seed: 9 }]) {
      const common = { maxTokens: 30, ...opts };
      const cached = await generateAll(model, chat, prompt, { ...common, useCache: true, allowedTokens: extractiveHook(chat, prompt)! });
      const uncached = await generateAll(model, chat, prompt, { ...common, useCache: false, allowedTokens: extractiveHook(chat, prompt)! });
      expect(cached.tokens).toEqual(uncached.tokens);
      expect(cached.tokens.length).toBeGreaterThan(0);
      expect(context.split('\n').slice(1).join('\n')).toContain(cached.text);
      const free = await generateAll(model, chat, prompt, { ...common, useCache: true });
      if (free.text !== cached.text) masked += 1;
    }
    expect(masked).toBeGreaterThan(0); // the mask changed what was generated
    model.dispose();
  });

  it('KV-cached logits equal full-forward logits position by position', async () => {
    await useBackend(backend);
    const model = tinyModel(config, 4, 0.4);
    const ids = tokenizer.encode('the quick brown fox');
    const full = tf.tidy(() => model.forward(tf.tensor2d(Int32Array.from(ids), [1, ids.length], 'int32')));
    const fullData = full.dataSync();
    const cache = model.emptyCache();
    // Prefill 5 tokens at once, then one at a time.
    const V = config.vocabSize;
    let step = model.forwardCached(tf.tensor2d(Int32Array.from(ids.slice(0, 5)), [1, 5], 'int32'), cache);
    for (let t = 4; t < ids.length; t++) {
      const got = step.dataSync();
      for (let v = 0; v < V; v++) expect(got[v]).toBeCloseTo(fullData[t * V + v]!, 4);
      step.dispose();
      if (t + 1 < ids.length) step = model.forwardCached(tf.tensor2d([ids[t + 1]!], [1, 1], 'int32'), cache);
    }
    expect(cache.length).toBe(ids.length);
    GPT.disposeCache(cache);
    full.dispose();
    model.dispose();
  });
});

describe('generation controls', () => {
  it('streams tokens whose texts add up to the result, and stops at maxTokens', async () => {
    await useBackend('wasm');
    const model = tinyModel(config, 8, 0.4);
    const seen: GeneratedToken[] = [];
    const it = generate(model, tokenizer, tokenizer.encode('ab'), { maxTokens: 10, temperature: 0.9, seed: 1, stopAtEnd: false }, (t) => seen.push(t));
    const streamed: string[] = [];
    let r = await it.next();
    while (!r.done) {
      streamed.push(r.value.text);
      r = await it.next();
    }
    expect(r.value.finishReason).toBe('length');
    expect(r.value.tokens.length).toBe(10);
    expect(streamed.join('')).toBe(r.value.text);
    expect(seen.map((t) => t.text).join('')).toBe(r.value.text);
    expect(r.value.text).toBe(tokenizer.decode(r.value.tokens));
    model.dispose();
  });

  it('keeps generating past the block size (cache window shifts)', async () => {
    await useBackend('wasm');
    const model = tinyModel(config, 8, 0.4);
    const run = () => generateAll(model, tokenizer, tokenizer.encode('abc'), { maxTokens: 60, temperature: 1, seed: 2, stopAtEnd: false });
    expect((await run()).tokens.length).toBe(60);
    // No tensors leak (the first run may add cached attention masks).
    const before = tf.memory().numTensors;
    expect((await run()).tokens.length).toBe(60);
    expect(tf.memory().numTensors).toBe(before);
    model.dispose();
  });

  it('honours stop sequences without returning them, and cancellation', async () => {
    await useBackend('wasm');
    const model = tinyModel(config, 8, 0.4);
    const prompt = tokenizer.encode('ab');
    const free = await generateAll(model, tokenizer, prompt, { maxTokens: 20, temperature: 0, stopAtEnd: false });
    const stop = free.text.slice(5, 7);
    const stopped = await generateAll(model, tokenizer, prompt, { maxTokens: 20, temperature: 0, stopAtEnd: false, stop: [stop] });
    expect(stopped.finishReason).toBe('stop');
    expect(stopped.text).toBe(free.text.slice(0, free.text.indexOf(stop)));
    expect(stopped.text.includes(stop)).toBe(false);

    const controller = new AbortController();
    const aborted = await generateAll(model, tokenizer, prompt, { maxTokens: 50, temperature: 0, stopAtEnd: false, signal: controller.signal }, (t) => {
      if (t.index === 2) controller.abort();
    });
    expect(aborted.finishReason).toBe('aborted');
    expect(aborted.tokens.length).toBe(3);
    model.dispose();
  });

  it('stops at the end token and never emits other special tokens', async () => {
    await useBackend('wasm');
    const model = tinyModel(config, 8, 0.4);
    // Make <|end|> overwhelmingly likely by boosting its embedding row (tied head).
    const end = tokenizer.special.end!;
    const wte = model.params.get('transformer.wte.weight')!;
    const boosted = tf.tidy(() => {
      const mask = tf.oneHot([end], config.vocabSize).reshape([config.vocabSize, 1]);
      return tf.keep(tf.add(wte, tf.mul(mask, tf.onesLike(wte))));
    });
    model.setParams(new Map([...model.params, ['transformer.wte.weight', boosted]]));
    const r = await generateAll(model, tokenizer, tokenizer.encode('abc'), { maxTokens: 30, temperature: 1, seed: 3 });
    const specials = new Set(Object.values(tokenizer.special));
    expect(r.tokens.some((t) => specials.has(t))).toBe(false);
    expect(r.finishReason === 'stop' || r.tokens.length === 30).toBe(true);
    model.dispose();
  });
});

describe('sampling', () => {
  it('greedy, top-k 1 and repetition penalty behave', () => {
    const logits = () => Float32Array.from([1, 3, 2, -1]);
    expect(sampleToken(logits(), { temperature: 0 }, new Random(1))).toBe(1);
    for (let s = 0; s < 20; s++) expect(sampleToken(logits(), { temperature: 1, topK: 1 }, new Random(s))).toBe(1);
    const l = logits();
    applyRepetitionPenalty(l, [1, 3], 2);
    expect(Array.from(l)).toEqual([1, 1.5, 2, -2]);
    expect(sampleToken(logits(), { temperature: 0, repetitionPenalty: 2 }, new Random(1), [1])).toBe(2);
    // top-p small keeps only the most likely token.
    for (let s = 0; s < 20; s++) expect(sampleToken(logits(), { temperature: 1, topP: 0.1 }, new Random(s))).toBe(1);
    // Sampling follows the distribution roughly.
    const counts = [0, 0, 0, 0];
    const rng = new Random(7);
    for (let i = 0; i < 4000; i++) counts[sampleToken(logits(), { temperature: 1 }, rng)]!++;
    const z = [1, 3, 2, -1].map(Math.exp);
    const sum = z.reduce((a, b) => a + b);
    counts.forEach((c, i) => expect(c / 4000).toBeCloseTo(z[i]! / sum, 1));
  });
});
