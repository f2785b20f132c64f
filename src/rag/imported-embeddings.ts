/**
 * An imported open encoder (bge, e5, gte: `teamllm model import`) behind LangChain's `Embeddings`,
 * the dense half of hybrid retrieval in place of the locally trained bag-of-features encoder.
 *
 * `<home>/embeddings/selected.json` says which encoder the knowledge bases use: `{ "encoder": "v3" }`
 * for an imported version, absent for the trained one (`teamllm kb reindex --encoder ...` writes it).
 */
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Embeddings } from '@langchain/core/embeddings';
import { loadEncoderVersion, type EncoderManifest } from '../model/import/encoder-manifest.ts';
import type { BertEncoder } from '../model/import/bert.ts';
import type { EncoderTokenizer } from '../model/import/encoder-tokenizer.ts';
import type { EncoderPrompts } from '../model/import/encoder-checkpoint.ts';
import type { ModelRegistry, ModelVersion } from '../model/registry.ts';

export const IMPORTED_EMBEDDINGS_FORMAT = 'teamllm-imported-encoder/1';

/** Identifies the vectors an encoder made (stored with them, so other vectors are re-embedded). */
export interface ImportedEmbeddingInfo {
  format: typeof IMPORTED_EMBEDDINGS_FORMAT;
  id: string;
  version: string;
  name?: string;
  architecture: string;
  dimensions: number;
  pooling: EncoderManifest['pooling'];
  licence: string;
}

/** Sequences embedded per forward (sorted by length, so padding stays small). */
const BATCH = 8;
/** Passage vectors kept for the cosines of BM25 hits that the vector store did not return. */
const CACHE = 4096;

export class ImportedEmbeddings extends Embeddings {
  private readonly cache = new Map<string, number[]>();

  constructor(
    readonly encoder: BertEncoder,
    readonly tokenizer: EncoderTokenizer,
    readonly info: ImportedEmbeddingInfo,
    /** Tokens per passage at most (the encoder's limit, or less: long passages cost quadratically). */
    readonly maxTokens = Math.min(encoder.maxTokens, 512),
    /** What the model's sentence-transformers config puts before queries and passages ("query: ", "passage: "). */
    readonly prompts: EncoderPrompts = {},
  ) {
    super({ maxRetries: 0 });
  }

  get dimensions(): number {
    return this.info.dimensions;
  }

  /** The encoder of a registered version (its files checked against their recorded hashes first). */
  static async load(registry: ModelRegistry, version: string): Promise<ImportedEmbeddings> {
    const entry = await registry.get(version);
    if (!entry) throw new Error(`no model version ${version} (see teamllm model list)`);
    if (entry.kind !== 'encoder') throw new Error(`${version} is a language model, not an imported encoder (import one with teamllm model import)`);
    await registry.assertIntact(version);
    const { encoder, tokenizer, manifest } = loadEncoderVersion(registry.dir(version));
    return new ImportedEmbeddings(encoder, tokenizer, embeddingInfo(entry, manifest), undefined, manifest.prompts ?? {});
  }

  /** A passage's vector. */
  embedText(text: string): number[] {
    return this.embedAll([`${this.prompts.document ?? ''}${text}`])[0]!;
  }

  /** A question's vector, at once (the answerer compares it with each sentence's). */
  embedQueryText(query: string): number[] {
    return this.embedAll([`${this.prompts.query ?? ''}${query}`])[0]!;
  }

  async embedDocuments(documents: string[]): Promise<number[][]> {
    return this.embedAll(documents.map((d) => `${this.prompts.document ?? ''}${d}`));
  }

  async embedQuery(query: string): Promise<number[]> {
    return this.embedQueryText(query);
  }

  private embedAll(texts: string[]): number[][] {
    const out: number[][] = new Array(texts.length);
    const todo: { i: number; ids: number[] }[] = [];
    for (const [i, text] of texts.entries()) {
      const hit = this.cache.get(text);
      if (hit) out[i] = hit;
      else todo.push({ i, ids: this.tokenizer.encode(text, this.maxTokens).ids });
    }
    todo.sort((a, b) => a.ids.length - b.ids.length);
    for (let start = 0; start < todo.length; start += BATCH) {
      const batch = todo.slice(start, start + BATCH);
      const vectors = this.encoder.embed(batch.map((b) => ({ ids: b.ids })));
      for (const [j, b] of batch.entries()) {
        const v = Array.from(vectors[j]!);
        out[b.i] = v;
        this.remember(texts[b.i]!, v);
      }
    }
    return out;
  }

  private remember(text: string, vector: number[]): void {
    if (this.cache.size >= CACHE) this.cache.delete(this.cache.keys().next().value!);
    this.cache.set(text, vector);
  }
}

function embeddingInfo(entry: ModelVersion, manifest: EncoderManifest): ImportedEmbeddingInfo {
  // The version and its weights' hashes: a re-import under the same number still re-embeds.
  const hash = createHash('sha256').update(entry.version);
  for (const [file, f] of Object.entries(entry.files ?? {}).sort()) hash.update(`${file}:${f.sha256}`);
  return {
    format: IMPORTED_EMBEDDINGS_FORMAT,
    id: `${entry.version}-${hash.digest('hex').slice(0, 12)}`,
    version: entry.version,
    ...(entry.name ? { name: entry.name } : {}),
    architecture: manifest.architecture,
    dimensions: manifest.dimensions,
    pooling: manifest.pooling,
    licence: manifest.licence,
  };
}

/** Which encoder the knowledge bases of a home use: an imported version, or undefined for the trained one. */
export function selectedEncoder(embeddingsDir: string): string | undefined {
  const file = join(embeddingsDir, 'selected.json');
  if (!existsSync(file)) return undefined;
  const value = (JSON.parse(readFileSync(file, 'utf8')) as { encoder?: unknown }).encoder;
  return typeof value === 'string' ? value : undefined;
}

/** Records the choice (undefined: back to the trained encoder). */
export function selectEncoder(embeddingsDir: string, version: string | undefined): void {
  const file = join(embeddingsDir, 'selected.json');
  if (version === undefined) {
    rmSync(file, { force: true });
    return;
  }
  mkdirSync(embeddingsDir, { recursive: true });
  writeFileSync(`${file}.tmp`, `${JSON.stringify({ encoder: version, selectedAt: new Date().toISOString() }, null, 2)}\n`);
  renameSync(`${file}.tmp`, file);
}
