/**
 * `npm run bench -- generate [--backend wasm|cpu|tensorflow] [--tokens N] [--prompt N]
 *   [--sizes nanogpt-cpu,gpt-10m] [--model-dir dir] [--no-cache-compare]`
 *
 * Tokens per second with the KV cache (batch 1, sampling at temperature 0.8, top-k 40), and the
 * time to the first token after a prompt, for the baby GPT (0.8M) and a ~10M-parameter model.
 * Weights are random unless --model-dir is given (speed does not depend on them). The last line
 * on stdout is the key=value summary.
 */
import { parseArgs } from 'node:util';
import { initBackend, parseBackendName } from '../src/model/backend.ts';
import { GPT } from '../src/model/gpt.ts';
import { MODEL_SIZES, type ModelSizeName } from '../src/model/config.ts';
import { CharTokenizer } from '../src/model/tokenizer/char.ts';
import type { Tokenizer } from '../src/model/tokenizer/types.ts';
import { generateAll } from '../src/model/generate.ts';
import { loadModelFiles } from '../src/model/model-files.ts';
import { Random } from '../src/model/random.ts';

const SHAKESPEARE_CHARS = "\n !$&',-.3:;?ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

async function measure(
  label: string,
  model: GPT,
  tokenizer: Tokenizer,
  tokens: number,
  promptLen: number,
  useCache: boolean,
): Promise<{ tps: number; ttftMs: number }> {
  const rng = new Random(1);
  const prompt = Array.from({ length: promptLen }, () => rng.int(tokenizer.vocabSize));
  const opts = { maxTokens: tokens, temperature: 0.8, topK: 40, seed: 3, stopAtEnd: false, useCache };
  await generateAll(model, tokenizer, prompt, { ...opts, maxTokens: 8 }); // warm-up (kernels, masks)
  const r = await generateAll(model, tokenizer, prompt, opts);
  // Decode speed: tokens after the first over the time after the first.
  const tps = ((r.tokens.length - 1) * 1000) / (r.totalMs - r.firstTokenMs);
  process.stderr.write(
    `${label}${useCache ? '' : ' (no cache)'}: ${model.numParameters} params, ${r.tokens.length} tokens, ` +
      `${tps.toFixed(1)} tok/s, first token after ${r.firstTokenMs.toFixed(1)} ms (prompt ${promptLen})\n`,
  );
  return { tps, ttftMs: r.firstTokenMs };
}

export async function run(argv: string[]): Promise<void> {
  const { values } = parseArgs({
    args: argv,
    options: {
      backend: { type: 'string' },
      tokens: { type: 'string', default: '200' },
      prompt: { type: 'string' },
      sizes: { type: 'string', default: 'nanogpt-cpu,gpt-10m' },
      'model-dir': { type: 'string' },
      'no-cache-compare': { type: 'boolean', default: false },
    },
    allowPositionals: true,
  });
  const backend = await initBackend(parseBackendName(values.backend));
  const tokens = Number(values.tokens);
  const figures: string[] = [];
  const models: { key: string; model: GPT; tokenizer: Tokenizer }[] = [];
  if (values['model-dir']) {
    const { model, tokenizer } = await loadModelFiles(values['model-dir']);
    models.push({ key: 'model', model, tokenizer });
  } else {
    const tokenizer = CharTokenizer.fromText(SHAKESPEARE_CHARS);
    for (const size of values.sizes!.split(',')) {
      const shape = MODEL_SIZES[size as ModelSizeName];
      if (!shape) throw new Error(`Unknown size ${size}`);
      const model = GPT.create({ ...shape, vocabSize: tokenizer.vocabSize }, 1);
      models.push({ key: size.replace(/-/g, '_'), model, tokenizer });
    }
  }
  for (const { key, model, tokenizer } of models) {
    const promptLen = Number(values.prompt ?? Math.floor(model.config.blockSize / 2));
    const n = Math.min(tokens, model.config.blockSize - promptLen);
    const cached = await measure(key, model, tokenizer, n, promptLen, true);
    figures.push(`${key}_tokens_per_s=${cached.tps.toFixed(1)}`, `${key}_ttft_ms=${cached.ttftMs.toFixed(1)}`);
    if (!values['no-cache-compare']) {
      const uncached = await measure(key, model, tokenizer, Math.min(n, 64), promptLen, false);
      figures.push(`${key}_nocache_tokens_per_s=${uncached.tps.toFixed(1)}`);
    }
    figures.push(`${key}_params=${model.numParameters}`);
    model.dispose();
  }
  figures.push(`backend=${backend}`);
  console.log(figures.join(' '));
}
