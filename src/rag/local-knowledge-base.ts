import { createHash } from 'node:crypto';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { basename, dirname, join, relative, sep } from 'node:path';
import { Document } from '@langchain/core/documents';
import type { Attachment, KbAddReport, KbSourceInfo, KnowledgeBase, Source } from '../core/index.ts';
import { Bm25Index, weightedQuery } from './bm25.ts';
import { EXPANSION_WEIGHT, workplaceExpansions } from './workplace-words.ts';
import { flatMetadata, type FlatMetadata } from './metadata.ts';
import { fetchDocument, isUrl, loadDocument, type FetchedDocument } from './loaders.ts';
import type { DenseEmbeddings } from './dense-embeddings.ts';
import { splitDocument } from './markdown-splitter.ts';
import type { TermOptions } from './search-terms.ts';
import { KnowledgeRecord, type SharedSource } from './knowledge-record.ts';
import { DEFAULT_FUSION, hybridRetrieve, passageText, type DenseIndex, type FusionOptions, type RetrievedPassage, type SearchOptions, type StoredChunk } from './hybrid-retrieval.ts';

export type { SharedSource } from './knowledge-record.ts';
export { DEFAULT_FUSION, passageText, type DenseIndex, type FusionMethod, type FusionOptions, type RetrievalMode, type RetrievedPassage, type SearchOptions } from './hybrid-retrieval.ts';

/** How BM25 reads passages and queries (measured on the dev sets: docs/knowledge-base.md). */
export interface LexicalOptions {
  terms: TermOptions;
  /** BM25's term-frequency saturation and length normalisation. */
  k1: number;
  b: number;
  /** Weight of the heading path against the passage text (BM25F field weight). */
  titleWeight: number;
  /**
   * Weight of a query's single Chinese characters (`cjkUnigrams`) against its words and bigrams:
   * they let a paraphrase that shares only characters find its passage, without outranking one
   * that shares words.
   */
  unigramWeight: number;
  /** Weight of the handbook words an asker's everyday words stand for (workplace-words.ts; 0: none). */
  expansionWeight: number;
}

/**
 * Measured on the dev splits (docs/knowledge-base.md): Porter stems and a heading path counting
 * twice helped English; single Chinese characters at half weight helped Chinese (a paraphrase
 * often shares characters, not words, with the text: 生孩子 / 生育); everyday words read as the
 * handbook's at half weight ("vacation" finds annual leave).
 */
export const DEFAULT_LEXICAL: LexicalOptions = { terms: { stem: true, cjkUnigrams: true }, k1: 1.2, b: 0.75, titleWeight: 2, unigramWeight: 0.5, expansionWeight: EXPANSION_WEIGHT };

export interface KnowledgeBaseOptions {
  /** The knowledge base's name, stored as `kb` in every passage's metadata. */
  name?: string;
  /** Passage size in characters. */
  chunkSize?: number;
  lexical?: Partial<LexicalOptions>;
  fusion?: Partial<FusionOptions>;
  /** Downloads `kb add <url>` sources (default: fetchDocument, plain HTTP). */
  fetchUrl?: (url: string) => Promise<FetchedDocument>;
  /**
   * Told when the vector store fails (a search, a write): the knowledge base has already switched
   * to BM25 alone and stays so until `useDense` is called again (open-knowledge-base.ts probes
   * the store and does that when it answers).
   */
  onDenseFailure?: (err: unknown) => void;
  /**
   * How long a search waits for the vector store before answering with BM25 alone (default 5 s):
   * a hung server (stopped, overloaded, a half-open connection) must not hold every answer.
   */
  denseTimeoutMs?: number;
}

export interface AddOptions {
  /** Source names are paths relative to this folder (default: each folder given, or a file's own folder). */
  baseDir?: string;
  /** Extra flat metadata for every passage of these sources, for search filters (e.g. `{ team: 'hr' }`). */
  metadata?: FlatMetadata;
}

/** Told after documents were added, changed or removed here (not when applied from elsewhere). */
export type KnowledgeChangeListener = (sources: string[]) => Promise<void>;

interface PendingVectors {
  sources: Set<string>;
  chunks: StoredChunk[];
}

/**
 * A knowledge base: documents split into passages kept in SQLite (the record: what was indexed,
 * when, from which content hash), a BM25 index in memory, and — once an encoder is trained —
 * their embeddings in a vector store (Chroma in the app). Search fuses BM25 and dense results.
 *
 * Re-adding a file whose content hash is unchanged is a no-op; a changed file replaces all its
 * passages; one unreadable file is reported by name and never stops the others.
 */
export class LocalKnowledgeBase implements KnowledgeBase {
  readonly name: string;
  private readonly record: KnowledgeRecord;
  private index: Bm25Index<StoredChunk>;
  private byId = new Map<string, StoredChunk>();
  private dense: DenseIndex | undefined;
  /** Set while the vector store is unreachable: searches are BM25 alone, writes are deferred. */
  private denseDown: unknown;
  /** Searches answered by BM25 alone because the vector store was unreachable. */
  lexicalOnlySearches = 0;
  private readonly fusion: FusionOptions;
  private readonly lexical: LexicalOptions;
  private changeListener: KnowledgeChangeListener | undefined;

  constructor(
    file: string,
    private readonly options: KnowledgeBaseOptions = {},
  ) {
    this.name = options.name ?? 'default';
    this.fusion = { ...DEFAULT_FUSION, ...options.fusion };
    this.lexical = { ...DEFAULT_LEXICAL, ...options.lexical };
    this.index = new Bm25Index({ terms: this.lexical.terms, k1: this.lexical.k1, b: this.lexical.b });
    this.record = new KnowledgeRecord(file);
    this.rebuildIndex();
  }

  get chunkCount(): number {
    return this.index.size;
  }

  /** How much a search term says about a passage: its BM25 idf over this knowledge base. */
  readonly termWeight = (term: string): number => this.index.idf(term);

  /** The encoder the dense side uses, if any. */
  get embeddings(): DenseEmbeddings | undefined {
    return this.dense?.embeddings;
  }

  /**
   * Attaches (or, with undefined, detaches) the dense index. Vectors made by another encoder, or a
   * store that lost passages (a new CHROMA_URL, a wiped folder), are rebuilt from SQLite.
   * Returns how many passages were embedded.
   */
  async useDense(dense: DenseIndex | undefined): Promise<number> {
    this.dense = dense;
    this.denseDown = undefined;
    if (!dense) return 0;
    try {
      const sameModel = this.setting('dense_model') === dense.embeddings.info.id;
      // Sources added, changed or removed while the store was unreachable: only theirs are redone.
      const pending = sameModel ? this.pendingSources() : [];
      let written = 0;
      for (const source of pending) {
        await dense.store.delete({ filter: { source } });
        const chunks = [...this.byId.values()].filter((c) => c.source === source);
        await this.writeVectors(chunks);
        written += chunks.length;
      }
      if (pending.length > 0) this.setSetting('dense_pending', '[]');
      const inStore = await dense.store.count();
      if (sameModel && inStore === this.chunkCount) return written;
      await dense.store.clear();
      const chunks = [...this.byId.values()];
      await this.writeVectors(chunks);
      this.setSetting('dense_model', dense.embeddings.info.id);
      this.setSetting('dense_pending', '[]');
      return chunks.length;
    } catch (err) {
      this.dense = undefined;
      throw err;
    }
  }

  /** Whether searches are BM25 alone because the vector store failed (until `useDense` again). */
  get denseUnavailable(): boolean {
    return this.denseDown !== undefined;
  }

  /** The dense side failed: BM25 alone from now on, until the store is attached again. */
  private denseFailed(err: unknown): void {
    if (this.denseDown !== undefined) return;
    this.denseDown = err;
    this.options.onDenseFailure?.(err);
  }

  /** Sources whose vectors could not be written (kept in SQLite: a restart still catches up). */
  private pendingSources(): string[] {
    return JSON.parse(this.setting('dense_pending') ?? '[]') as string[];
  }

  private addPending(sources: Iterable<string>): void {
    this.setSetting('dense_pending', JSON.stringify([...new Set([...this.pendingSources(), ...sources])]));
  }

  /** Every passage, in document order (what the encoder trains on). */
  passages(): { source: string; title: string; text: string; position: number }[] {
    return [...this.byId.values()].map(({ source, title, text, position }) => ({ source, title, text, position }));
  }

  async addPaths(paths: string[], options: AddOptions = {}): Promise<KbAddReport> {
    const report: KbAddReport = { added: [], updated: [], unchanged: [], failed: [] };
    const pending: PendingVectors = { sources: new Set(), chunks: [] };
    for (const path of paths) {
      if (isUrl(path)) {
        try {
          const fetched = await (this.options.fetchUrl ?? fetchDocument)(path);
          await this.ingest(path, fetched.content, fetched.contentType, report, pending, options.metadata);
        } catch (err) {
          report.failed.push({ source: path, reason: errorMessage(err) });
        }
        continue;
      }
      let files: string[];
      let base: string;
      try {
        const isDir = statSync(path).isDirectory();
        files = isDir ? walk(path) : [path];
        base = options.baseDir ?? (isDir ? path : dirname(path));
      } catch (err) {
        report.failed.push({ source: path, reason: errorMessage(err) });
        continue;
      }
      for (const file of files) {
        const source = relative(base, file).split(sep).join('/');
        try {
          await this.ingest(source, readFileSync(file), undefined, report, pending, options.metadata);
        } catch (err) {
          report.failed.push({ source, reason: errorMessage(err) });
        }
      }
    }
    await this.finishAdding(report, pending);
    await this.changed([...report.added, ...report.updated]);
    return report;
  }

  async addAttachments(attachments: Attachment[], options: Pick<AddOptions, 'metadata'> = {}): Promise<KbAddReport> {
    const report: KbAddReport = { added: [], updated: [], unchanged: [], failed: [] };
    const pending: PendingVectors = { sources: new Set(), chunks: [] };
    for (const attachment of attachments) {
      const source = basename(attachment.name);
      try {
        if (!attachment.fetch) throw new Error('the platform gave no way to download this file');
        await this.ingest(source, await attachment.fetch(), attachment.mimeType, report, pending, options.metadata);
      } catch (err) {
        report.failed.push({ source, reason: errorMessage(err) });
      }
    }
    await this.finishAdding(report, pending);
    await this.changed([...report.added, ...report.updated]);
    return report;
  }

  private async ingest(
    source: string,
    content: Uint8Array,
    contentType: string | undefined,
    report: KbAddReport,
    pending: PendingVectors,
    extra: FlatMetadata = {},
  ): Promise<void> {
    const extraJson = JSON.stringify(flatMetadata(extra));
    // The metadata is part of the identity: re-adding a file with another tag re-indexes it.
    const hash = createHash('sha256').update(content).update(extraJson === '{}' ? '' : extraJson).digest('hex');
    const existing = this.record.hashOf(source);
    if (existing === hash) {
      report.unchanged.push(source);
      return;
    }
    const doc = await loadDocument(source, content, contentType);
    const chunks = await splitDocument(doc, this.options.chunkSize);
    if (chunks.length === 0) throw new Error('no text found in the document');
    this.record.transaction(() =>
      this.record.putSource(
        source,
        { title: doc.title, hash, indexedAt: Date.now(), format: doc.format, metadata: extraJson },
        chunks.map((c) => ({ position: c.position, title: c.title, text: c.text, page: c.page ?? null })),
      ),
    );
    if (existing && this.dense) pending.sources.add(source);
    const metadata = this.sourceMetadata(source, doc.format, extraJson);
    for (const c of chunks) pending.chunks.push(this.toStored({ source, position: c.position, title: c.title, text: c.text, page: c.page ?? null }, metadata));
    (existing ? report.updated : report.added).push(source);
  }

  /** Writes the new passages' vectors and rebuilds BM25, once per add (not once per file). */
  private async finishAdding(report: KbAddReport, pending: PendingVectors): Promise<void> {
    if (report.added.length + report.updated.length === 0) return;
    this.rebuildIndex();
    if (!this.dense) return;
    const sources = [...report.added, ...report.updated];
    if (this.denseDown !== undefined) {
      // The store is unreachable: searchable by keyword now, embedded when the store is back.
      this.addPending(sources);
      return;
    }
    try {
      for (const source of pending.sources) await this.dense.store.delete({ filter: { source } });
      await this.writeVectors(pending.chunks);
    } catch (err) {
      // SQLite has the passages; their vectors are written when the store answers again.
      this.addPending(sources);
      this.denseFailed(err);
    }
  }

  private async writeVectors(chunks: StoredChunk[]): Promise<void> {
    if (!this.dense || chunks.length === 0) return;
    const batch = 1000;
    for (let start = 0; start < chunks.length; start += batch) {
      const slice = chunks.slice(start, start + batch);
      const vectors = await this.dense.embeddings.embedDocuments(slice.map(passageText));
      const documents = slice.map((c) => new Document({ id: c.id, pageContent: c.text, metadata: c.metadata }));
      await this.dense.store.addVectors(vectors, documents, { ids: slice.map((c) => c.id) });
    }
  }

  async list(): Promise<KbSourceInfo[]> {
    return this.record.list();
  }

  async remove(source: string): Promise<number> {
    const removed = this.record.transaction(() => this.record.deleteSource(source));
    if (removed > 0) {
      this.rebuildIndex();
      if (this.dense && this.denseDown !== undefined) this.addPending([source]);
      else if (this.dense) {
        try {
          await this.dense.store.delete({ filter: { source } });
        } catch (err) {
          this.addPending([source]);
          this.denseFailed(err);
        }
      }
    }
    if (removed > 0) await this.changed([source]);
    return removed;
  }

  /**
   * Shares this knowledge base with other processes: `listener` is told the sources added, changed
   * or removed here (after they are committed locally), e.g. to publish them to PostgreSQL.
   */
  onChange(listener: KnowledgeChangeListener | undefined): void {
    this.changeListener = listener;
  }

  private async changed(sources: string[]): Promise<void> {
    if (sources.length > 0 && this.changeListener) await this.changeListener(sources);
  }

  /** The content hash of every document (what sharing compares). */
  sourceHashes(): Map<string, string> {
    return this.record.hashes();
  }

  /** One document's record and passages as stored here, or undefined when it is not here. */
  sharedSource(source: string): SharedSource | undefined {
    return this.record.shared(source);
  }

  /**
   * Applies documents as another process indexed them (each one replaced, or removed when
   * `shared` is undefined): one transaction, then BM25 is rebuilt once and the vectors of those
   * documents rewritten. Listeners are not told (the change came from them).
   */
  async applyShared(changes: { source: string; shared: SharedSource | undefined }[]): Promise<void> {
    if (changes.length === 0) return;
    const removed: string[] = [];
    const pending: PendingVectors = { sources: new Set(), chunks: [] };
    const report: KbAddReport = { added: [], updated: [], unchanged: [], failed: [] };
    const existing = this.sourceHashes();
    this.record.transaction(() => {
      for (const { source, shared } of changes) {
        if (!shared) {
          this.record.deleteSource(source);
          if (existing.has(source)) removed.push(source);
          continue;
        }
        this.record.putSource(source, shared, shared.chunks);
        if (existing.has(source) && this.dense) pending.sources.add(source);
        const metadata = this.sourceMetadata(source, shared.format, shared.metadata);
        for (const c of shared.chunks) pending.chunks.push(this.toStored({ source, ...c }, metadata));
        (existing.has(source) ? report.updated : report.added).push(source);
      }
    });
    if (report.added.length + report.updated.length > 0) await this.finishAdding(report, pending);
    else this.rebuildIndex();
    if (removed.length === 0 || !this.dense) return;
    if (this.denseDown !== undefined) {
      this.addPending(removed);
      return;
    }
    try {
      for (const source of removed) await this.dense.store.delete({ filter: { source } });
    } catch (err) {
      this.addPending(removed);
      this.denseFailed(err);
    }
  }

  async search(query: string, k: number, options: SearchOptions = {}): Promise<Source[]> {
    return (await this.retrieve(query, k, options)).map(({ source, title, text, score }) => ({ source, title, text, score }));
  }

  /**
   * Hybrid search (hybrid-retrieval.ts) that outlives the vector store: while it is unreachable, or
   * slower than `denseTimeoutMs`, answers come from BM25 alone rather than as an error.
   */
  async retrieve(query: string, k: number, options: SearchOptions = {}): Promise<RetrievedPassage[]> {
    const wanted = options.mode ?? 'hybrid';
    if (this.dense && this.denseDown === undefined && wanted !== 'bm25') {
      try {
        return await withTimeout(this.retrieveWith(query, k, options, this.dense), this.options.denseTimeoutMs ?? 5_000, 'the vector store did not answer');
      } catch (err) {
        // Chroma died or cannot be reached: this question and the next ones are answered by
        // BM25 alone (it needs nothing but SQLite), not with an error.
        this.denseFailed(err);
      }
    }
    if (this.dense && this.denseDown !== undefined && wanted !== 'bm25') {
      this.lexicalOnlySearches += 1;
      return this.retrieveWith(query, k, { ...options, mode: 'bm25' }, undefined);
    }
    return this.retrieveWith(query, k, options, undefined);
  }

  private retrieveWith(query: string, k: number, options: SearchOptions, dense: DenseIndex | undefined): Promise<RetrievedPassage[]> {
    return hybridRetrieve(query, k, options, {
      chunk: (id) => this.byId.get(id),
      lexicalScores: (q, accept) => this.lexicalScores(q, accept),
      dense,
      fusion: this.fusion,
    });
  }

  /** BM25 over the query's terms, each once; single Chinese characters count `unigramWeight`. */
  private lexicalScores(query: string, accept?: (c: StoredChunk) => boolean): Map<StoredChunk, number> {
    const terms = this.index.terms(query);
    const weighted = weightedQuery(terms, this.lexical.unigramWeight);
    if (this.lexical.expansionWeight > 0) for (const t of workplaceExpansions(query, terms)) weighted.set(t, this.lexical.expansionWeight);
    return this.index.scoreAll(weighted, accept);
  }

  close(): void {
    this.record.close();
  }

  private sourceMetadata(source: string, format: string, extraJson: string): FlatMetadata {
    const folder = source.includes('/') && !isUrl(source) ? source.slice(0, source.indexOf('/')) : '';
    // Our own keys last: a user tag cannot pretend to be another source.
    return { ...(JSON.parse(extraJson) as FlatMetadata), kb: this.name, format, folder, source };
  }

  private toStored(row: Omit<StoredChunk, 'id' | 'metadata'>, sourceMetadata: FlatMetadata): StoredChunk {
    return {
      ...row,
      id: `${row.source}#${row.position}`,
      metadata: { ...sourceMetadata, title: row.title, position: row.position, ...(row.page !== null ? { page: row.page } : {}) },
    };
  }

  private rebuildIndex(): void {
    const index = new Bm25Index<StoredChunk>({ terms: this.lexical.terms, k1: this.lexical.k1, b: this.lexical.b });
    const byId = new Map<string, StoredChunk>();
    const sources = new Map(
      this.record.sourceFormats().map((s) => [
        s.source,
        this.sourceMetadata(s.source, s.format, s.metadata),
      ]),
    );
    const rows = this.record.passages();
    for (const row of rows) {
      const chunk = this.toStored(row, sources.get(row.source) ?? {});
      // The heading path is part of what a passage is about ("Sick leave" answers "sick days?").
      index.add(chunk, [
        { text: chunk.title, weight: this.lexical.titleWeight },
        { text: chunk.text, weight: 1 },
      ]);
      byId.set(chunk.id, chunk);
    }
    this.index = index;
    this.byId = byId;
  }

  private setting(key: string): string | undefined {
    return this.record.setting(key);
  }

  private setSetting(key: string, value: string): void {
    this.record.setSetting(key, value);
  }
}

function walk(dir: string): string[] {
  const out: string[] = [];
  for (const entry of readdirSync(dir, { withFileTypes: true }).sort((a, b) => a.name.localeCompare(b.name))) {
    if (entry.name.startsWith('.')) continue;
    const full = join(dir, entry.name);
    if (entry.isDirectory()) out.push(...walk(full));
    else if (entry.isFile()) out.push(full);
  }
  return out;
}

/** `promise`, or a rejection after `ms` (its timer does not keep the process alive). */
function withTimeout<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} within ${ms} ms`)), ms);
    timer.unref();
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

function errorMessage(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
