import { KNOWLEDGE_LOCK, type PgStore } from '../core/pg-store.ts';
import { silentLogger, type Logger } from '../core/index.ts';
import type { LocalKnowledgeBase, SharedSource } from './local-knowledge-base.ts';

const CHANNEL = 'teamllm_kb';

export interface PgKnowledgeSyncOptions {
  logger?: Logger;
  /** How often the change feed is read when no NOTIFY woke us (default 1 s). */
  pollMs?: number;
}

/**
 * Knowledge bases shared by every bot process through PostgreSQL (TEAMLLM_DATABASE_URL).
 *
 * PostgreSQL holds each knowledge base's documents and passages (kb_sources, kb_chunks) and a
 * change feed (kb_changes: one row per document added, changed or removed). Each process keeps
 * its local copy (the SQLite file under TEAMLLM_HOME and the BM25 index in memory) following
 * that feed: a document added or removed through any process is published there, NOTIFY wakes
 * the others, and they apply it within a second or so without a restart (a poll every `pollMs`
 * catches anything a dropped LISTEN connection missed). Vectors live in one Chroma (CHROMA_URL);
 * a process that applies a change rewrites that document's vectors (an idempotent upsert).
 *
 * Changes are numbered under an advisory lock, so numbers are handed out in commit order and a
 * reader that has seen number n has seen every change before it.
 */
export class PgKnowledgeSync {
  private readonly kbs = new Map<string, LocalKnowledgeBase>();
  private lastSeq = 0;
  private timer: NodeJS.Timeout | undefined;
  private unlisten: (() => Promise<void>) | undefined;
  private polling: Promise<void> | undefined;
  private again = false;
  private closed = false;
  private readonly logger: Logger;

  constructor(
    private readonly store: PgStore,
    private readonly options: PgKnowledgeSyncOptions = {},
  ) {
    this.logger = options.logger ?? silentLogger;
  }

  /** Starts following the feed (call before attaching knowledge bases). */
  async start(): Promise<void> {
    const { rows } = await this.store.pool.query<{ seq: number }>('SELECT coalesce(max(seq), 0)::bigint AS seq FROM kb_changes');
    this.lastSeq = rows[0]!.seq;
    try {
      this.unlisten = await this.store.listen(CHANNEL, () => this.poll(), (err) => this.logger.warn({ err: err.message }, 'the knowledge-base change feed connection failed; polling meanwhile'));
    } catch (err) {
      this.logger.warn({ err: err instanceof Error ? err.message : String(err) }, 'could not LISTEN for knowledge-base changes; polling only');
    }
    this.timer = setInterval(() => this.poll(), this.options.pollMs ?? 1000);
    this.timer.unref();
  }

  /**
   * Shares a knowledge base: brings the local copy up to PostgreSQL's (or, the first time this
   * knowledge base is seen there, publishes the local documents), then publishes every local change.
   */
  async attach(kb: LocalKnowledgeBase): Promise<void> {
    this.kbs.set(kb.name, kb);
    const seen = await this.store.pool.query<{ n: number }>(
      `SELECT ((SELECT count(*) FROM kb_sources WHERE kb = $1) + (SELECT count(*) FROM kb_changes WHERE kb = $1))::int AS n`,
      [kb.name],
    );
    const local = kb.sourceHashes();
    if (seen.rows[0]!.n === 0) {
      if (local.size > 0) {
        await this.publish(kb, [...local.keys()]);
        this.logger.info({ kb: kb.name, documents: local.size }, 'published the local knowledge base to PostgreSQL');
      }
    } else {
      const { rows } = await this.store.pool.query<{ source: string; hash: string }>('SELECT source, hash FROM kb_sources WHERE kb = $1', [kb.name]);
      const shared = new Map(rows.map((r) => [r.source, r.hash]));
      const stale = [...shared].filter(([source, hash]) => local.get(source) !== hash).map(([source]) => source);
      const gone = [...local.keys()].filter((source) => !shared.has(source));
      await this.apply(kb, [...stale, ...gone]);
      if (stale.length + gone.length > 0) this.logger.info({ kb: kb.name, updated: stale.length, removed: gone.length }, 'brought the knowledge base up to PostgreSQL\'s');
    }
    kb.onChange((sources) => this.publish(kb, sources));
  }

  /** Writes these documents as the local copy has them (or their removal) and announces the change. */
  private async publish(kb: LocalKnowledgeBase, sources: string[]): Promise<void> {
    await this.store.transaction(async (client) => {
      await client.query('SELECT pg_advisory_xact_lock($1)', [KNOWLEDGE_LOCK]);
      const now = Date.now();
      for (const source of sources) {
        const doc = kb.sharedSource(source);
        await client.query('DELETE FROM kb_sources WHERE kb = $1 AND source = $2', [kb.name, source]);
        if (doc) {
          await client.query('INSERT INTO kb_sources (kb, source, title, hash, indexed_at, format, metadata) VALUES ($1, $2, $3, $4, $5, $6, $7)', [
            kb.name,
            source,
            doc.title,
            doc.hash,
            doc.indexedAt,
            doc.format,
            doc.metadata,
          ]);
          await client.query(
            `INSERT INTO kb_chunks (kb, source, position, title, text, page)
             SELECT $1, $2, * FROM unnest($3::int[], $4::text[], $5::text[], $6::int[])`,
            [kb.name, source, doc.chunks.map((c) => c.position), doc.chunks.map((c) => c.title), doc.chunks.map((c) => c.text), doc.chunks.map((c) => c.page)],
          );
        }
        await client.query('INSERT INTO kb_changes (kb, source, at) VALUES ($1, $2, $3)', [kb.name, source, now]);
      }
      // Delivered at commit, to every process listening (this one too: it finds nothing to do).
      await client.query('SELECT pg_notify($1, $2)', [CHANNEL, kb.name]);
    });
  }

  /** Reads the feed since the last change seen and applies what concerns the open knowledge bases. */
  poll(): Promise<void> {
    if (this.closed) return Promise.resolve();
    if (this.polling) {
      this.again = true;
      return this.polling;
    }
    this.polling = (async () => {
      do {
        this.again = false;
        try {
          await this.pollOnce();
        } catch (err) {
          this.logger.warn({ err: err instanceof Error ? err.message : String(err) }, 'could not follow the knowledge-base change feed');
          break;
        }
      } while (this.again && !this.closed);
    })().finally(() => {
      this.polling = undefined;
    });
    return this.polling;
  }

  private async pollOnce(): Promise<void> {
    const { rows } = await this.store.pool.query<{ seq: number; kb: string; source: string }>(
      'SELECT seq, kb, source FROM kb_changes WHERE seq > $1 ORDER BY seq LIMIT 10000',
      [this.lastSeq],
    );
    if (rows.length === 0) return;
    const byKb = new Map<string, Set<string>>();
    for (const row of rows) {
      if (!byKb.has(row.kb)) byKb.set(row.kb, new Set());
      byKb.get(row.kb)!.add(row.source);
    }
    for (const [name, sources] of byKb) {
      const kb = this.kbs.get(name);
      if (kb) await this.apply(kb, [...sources]);
    }
    this.lastSeq = rows.at(-1)!.seq;
    if (rows.length === 10000) this.again = true;
  }

  /** Makes the local copy of these documents what PostgreSQL has (skipping those already equal). */
  private async apply(kb: LocalKnowledgeBase, sources: string[]): Promise<void> {
    if (sources.length === 0) return;
    const docs = await this.store.pool.query<Omit<SharedSource, 'chunks'>>(
      'SELECT source, title, hash, indexed_at AS "indexedAt", format, metadata FROM kb_sources WHERE kb = $1 AND source = ANY($2)',
      [kb.name, sources],
    );
    const local = kb.sourceHashes();
    const wanted = new Map(docs.rows.map((d) => [d.source, d]));
    const changes = sources.filter((s) => (wanted.has(s) ? wanted.get(s)!.hash !== local.get(s) : local.has(s)));
    if (changes.length === 0) return;
    const chunks = await this.store.pool.query<{ source: string; position: number; title: string; text: string; page: number | null }>(
      'SELECT source, position, title, text, page FROM kb_chunks WHERE kb = $1 AND source = ANY($2) ORDER BY source, position',
      [kb.name, changes],
    );
    const chunksOf = new Map<string, SharedSource['chunks']>();
    for (const { source, ...c } of chunks.rows) chunksOf.set(source, [...(chunksOf.get(source) ?? []), c]);
    await kb.applyShared(
      changes.map((source) => {
        const doc = wanted.get(source);
        return { source, shared: doc ? { ...doc, chunks: chunksOf.get(source) ?? [] } : undefined };
      }),
    );
    this.logger.info({ kb: kb.name, documents: changes }, 'applied knowledge-base changes from another process');
  }

  async close(): Promise<void> {
    this.closed = true;
    if (this.timer) clearInterval(this.timer);
    for (const kb of this.kbs.values()) kb.onChange(undefined);
    await this.polling?.catch(() => undefined);
    await this.unlisten?.();
  }
}
