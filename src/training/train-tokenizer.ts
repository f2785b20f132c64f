/** `teamllm train tokenizer`: a byte-level BPE tokenizer learned from the company's own text. */
import { promises as fs } from 'node:fs';
import { trainBpeFromCounts, countChunks, saveTokenizer, DEFAULT_PATTERN, type BpeTrainProgress, type Tokenizer } from '../model/tokenizer/index.ts';
import type { BpeTokenizer } from '../model/tokenizer/bpe.ts';
import { listCorpusFiles } from './corpus.ts';

export interface TrainTokenizerOptions {
  /** Text files or folders. */
  files?: string | string[];
  /** Or the text itself (several documents: counted one by one, as files are). */
  text?: string | string[];
  /** Vocabulary size including the special tokens (default 8192). */
  vocabSize?: number;
  /** Where to write tokenizer.json (optional). */
  outFile?: string;
  minFrequency?: number;
  onProgress?: (p: BpeTrainProgress & { file?: string }) => void;
}

export async function trainTokenizer(options: TrainTokenizerOptions): Promise<BpeTokenizer> {
  const counts = new Map<string, number>();
  if (options.text !== undefined) {
    const texts = [options.text].flat();
    for (let i = 0; i < texts.length; i++) {
      if (texts.length > 1) options.onProgress?.({ phase: 'count', done: i, total: texts.length });
      countChunks([texts[i]!], DEFAULT_PATTERN, counts);
    }
  }
  if (options.files !== undefined) {
    const files = await listCorpusFiles(options.files);
    if (files.length === 0) throw new Error(`No text files found in ${[options.files].flat().join(', ')}`);
    for (let i = 0; i < files.length; i++) {
      options.onProgress?.({ phase: 'count', done: i, total: files.length, file: files[i]! });
      countChunks([await fs.readFile(files[i]!, 'utf8')], DEFAULT_PATTERN, counts);
    }
    options.onProgress?.({ phase: 'count', done: files.length, total: files.length });
  }
  if (counts.size === 0) throw new Error('trainTokenizer needs `files` or `text` with some content');
  const trainOptions: Parameters<typeof trainBpeFromCounts>[1] = { vocabSize: options.vocabSize ?? 8192 };
  if (options.minFrequency !== undefined) trainOptions.minFrequency = options.minFrequency;
  if (options.onProgress) trainOptions.onProgress = options.onProgress;
  const tokenizer = trainBpeFromCounts(counts, trainOptions);
  if (options.outFile) await saveTokenizer(tokenizer as Tokenizer, options.outFile);
  return tokenizer;
}

/** Alias used by pretrain when asked to build its own tokenizer. */
export const trainBpeTokenizer = trainTokenizer;
