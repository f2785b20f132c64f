/**
 * Byte-level BPE encoding speed: MB of UTF-8 text encoded per second.
 *   npm run bench -- tokenizer [--mb 2] [--vocab 600] [--runs 5]
 *
 * The tokenizer is trained on the sample handbook (en + zh); the text encoded is the handbook
 * repeated to --mb megabytes. ~13 MB/s on an idle core of the development machine (the unit test
 * tests/model/tokenizer.test.ts used to assert > 1 MB/s; a speed bound belongs here, not in a
 * test a loaded CI machine runs).
 */
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { trainTokenizer } from '../src/training/train-tokenizer.ts';

const HANDBOOK = join(import.meta.dirname, '../examples/handbook');

export async function run(argv: string[]): Promise<void> {
  const { values } = parseArgs({ args: argv, options: { mb: { type: 'string', default: '2' }, vocab: { type: 'string', default: '600' }, runs: { type: 'string', default: '5' } } });
  const docs = ['en', 'zh'].flatMap((lang) => readdirSync(join(HANDBOOK, lang)).map((f) => readFileSync(join(HANDBOOK, lang, f), 'utf8')));
  const tok = await trainTokenizer({ text: docs, vocabSize: Number(values.vocab) });
  const sample = docs.join('\n');
  const text = sample.repeat(Math.ceil((Number(values.mb) * 1e6) / Buffer.byteLength(sample)));
  const mb = Buffer.byteLength(text) / 1e6;
  tok.encode(sample); // warm-up
  const secs: number[] = [];
  let tokens = 0;
  for (let i = 0; i < Number(values.runs); i++) {
    const t0 = performance.now();
    tokens = tok.encode(text).length;
    secs.push((performance.now() - t0) / 1000);
  }
  const median = [...secs].sort((a, b) => a - b)[Math.floor(secs.length / 2)]!;
  process.stderr.write(`${mb.toFixed(1)} MB of handbook text, ${tokens.toLocaleString('en-US')} tokens (vocabulary ${tok.vocabSize}), ${secs.length} runs\n`);
  process.stdout.write(`vocab=${tok.vocabSize} mb=${mb.toFixed(2)} tokens=${tokens} encode_mb_per_s=${(mb / median).toFixed(1)} encode_ms_median=${(median * 1000).toFixed(0)}\n`);
}
