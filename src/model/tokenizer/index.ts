/** Tokenizers: loading from tokenizer.json, and the public types. */
import { promises as fs } from 'node:fs';
import { CharTokenizer } from './char.ts';
import { BpeTokenizer } from './bpe.ts';
import type { Tokenizer, TokenizerFile } from './types.ts';
import { writeJsonAtomic } from '../files.ts';

export * from './types.ts';
export { CharTokenizer } from './char.ts';
export { BpeTokenizer } from './bpe.ts';
export { trainBpe, trainBpeFromCounts, countChunks, type TrainBpeOptions, type BpeTrainProgress } from './bpe-trainer.ts';
export { DEFAULT_PATTERN, pretokenize } from './pretokenize.ts';

export function tokenizerFromJSON(file: TokenizerFile): Tokenizer {
  switch (file.type) {
    case 'char':
      return CharTokenizer.fromJSON(file);
    case 'bpe':
      return BpeTokenizer.fromJSON(file);
    default:
      throw new Error(`Unknown tokenizer type ${(file as { type: string }).type}`);
  }
}

export async function loadTokenizer(file: string): Promise<Tokenizer> {
  return tokenizerFromJSON(JSON.parse(await fs.readFile(file, 'utf8')) as TokenizerFile);
}

export async function saveTokenizer(tokenizer: Tokenizer, file: string): Promise<void> {
  await writeJsonAtomic(file, tokenizer.toJSON());
}
