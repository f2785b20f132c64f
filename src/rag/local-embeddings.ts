import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Embeddings } from '@langchain/core/embeddings';
import { BagEncoder, EncoderEnsemble, type EncoderConfig } from './bag-encoder.ts';
import type { EncoderTrainingReport } from './encoder-training.ts';

export const EMBEDDINGS_FORMAT = 'teamllm-bag-ensemble/1';

/** What sits next to the weights: enough to rebuild the encoder and to tell which model made which vectors. */
export interface EmbeddingModelInfo {
  format: string;
  /** Changes whenever the weights change; stored with the vectors so stale ones are re-embedded. */
  id: string;
  config: EncoderConfig;
  trainedAt: string;
  corpus: { sources: number; passages: number };
  training: EncoderTrainingReport;
}

/**
 * The locally trained encoder behind LangChain's `Embeddings` interface, so it plugs into any
 * LangChain vector store or retriever. No download and no external API: the weights are the ones
 * `teamllm train embeddings` wrote under the data folder.
 */
export class LocalEmbeddings extends Embeddings {
  constructor(
    readonly encoder: EncoderEnsemble,
    readonly info: EmbeddingModelInfo,
  ) {
    // Embedding is synchronous CPU work: no retries or concurrency limits to configure.
    super({ maxRetries: 0 });
  }

  get dimensions(): number {
    return this.encoder.dimensions;
  }

  async embedDocuments(documents: string[]): Promise<number[][]> {
    return documents.map((d) => this.encoder.embed(d));
  }

  async embedQuery(query: string): Promise<number[]> {
    return this.encoder.embed(query);
  }

  /** The synchronous form, for callers that embed one passage in a loop (no promise per call). */
  embedText(text: string): number[] {
    return this.encoder.embed(text);
  }

  /**
   * Writes `encoder.json` and `encoder.bin` (float32, little-endian: each member's [buckets, dim]
   * table, then the shared [buckets] idf weights) into `dir`; the .bin first, so a crash never
   * leaves a json describing weights that are not there.
   */
  save(dir: string): void {
    mkdirSync(dir, { recursive: true });
    writeFileSync(join(dir, 'encoder.bin.tmp'), Buffer.concat(weightArrays(this.encoder).map(floatBytes)));
    renameSync(join(dir, 'encoder.bin.tmp'), join(dir, 'encoder.bin'));
    writeFileSync(join(dir, 'encoder.json.tmp'), `${JSON.stringify(this.info, null, 2)}\n`);
    renameSync(join(dir, 'encoder.json.tmp'), join(dir, 'encoder.json'));
  }

  /** The model saved in `dir`, or undefined when none has been trained there yet. */
  static load(dir: string): LocalEmbeddings | undefined {
    const meta = join(dir, 'encoder.json');
    if (!existsSync(meta)) return undefined;
    const info = JSON.parse(readFileSync(meta, 'utf8')) as EmbeddingModelInfo;
    if (info.format !== EMBEDDINGS_FORMAT) throw new Error(`${meta}: unknown embedding model format "${info.format}" (retrain with teamllm train embeddings)`);
    const raw = readFileSync(join(dir, 'encoder.bin'));
    // Copy into an aligned buffer: Float32Array views need a 4-byte aligned offset.
    const values = new Float32Array(raw.byteLength / 4);
    new Uint8Array(values.buffer).set(raw);
    const { buckets, dim, members } = info.config;
    const expected = (members * dim + 1) * buckets;
    if (values.length !== expected) throw new Error(`${dir}/encoder.bin has ${values.length} values, expected ${expected} (retrain with teamllm train embeddings)`);
    const idf = values.subarray(members * dim * buckets);
    const tables = Array.from({ length: members }, (_, m) => values.subarray(m * dim * buckets, (m + 1) * dim * buckets));
    return new LocalEmbeddings(new EncoderEnsemble(tables.map((t) => new BagEncoder(info.config, t, idf))), info);
  }

  static fromTraining(
    encoder: EncoderEnsemble,
    training: EncoderTrainingReport,
    corpus: { sources: number; passages: number },
  ): LocalEmbeddings {
    const hash = createHash('sha256');
    for (const values of weightArrays(encoder)) hash.update(floatBytes(values));
    const id = hash.digest('hex').slice(0, 16);
    return new LocalEmbeddings(encoder, {
      format: EMBEDDINGS_FORMAT,
      id,
      config: encoder.config,
      trainedAt: new Date().toISOString(),
      corpus,
      training,
    });
  }
}

function weightArrays(encoder: EncoderEnsemble): Float32Array[] {
  return [...encoder.members.map((m) => m.table), encoder.members[0]!.idf];
}

function floatBytes(values: Float32Array): Buffer {
  return Buffer.from(values.buffer, values.byteOffset, values.byteLength);
}
