/**
 * A knowledge base's record in SQLite: which documents were indexed, when, from which content hash,
 * their passages, and the knowledge base's settings. It is what survives a restart; BM25 and the
 * vectors are rebuilt from it.
 */
import { mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import Database from 'better-sqlite3';
import type { KbSourceInfo } from '../core/index.ts';

/** One document as knowledge bases share it between processes (PgKnowledgeSync): its record and passages. */
export interface SharedSource {
  source: string;
  title: string;
  hash: string;
  indexedAt: number;
  format: string;
  /** Extra flat metadata, as JSON. */
  metadata: string;
  chunks: { position: number; title: string; text: string; page: number | null }[];
}

export type SourceRecord = Omit<SharedSource, 'source' | 'chunks'>;
export type PassageRow = { source: string; position: number; title: string; text: string; page: number | null };

export class KnowledgeRecord {
  private readonly db: Database.Database;

  constructor(file: string) {
    if (file !== ':memory:') mkdirSync(dirname(file), { recursive: true });
    this.db = new Database(file);
    this.db.pragma('journal_mode = WAL');
    this.db.exec(`
      CREATE TABLE IF NOT EXISTS sources (source TEXT PRIMARY KEY, title TEXT NOT NULL, hash TEXT NOT NULL, indexed_at INTEGER NOT NULL);
      CREATE TABLE IF NOT EXISTS chunks (source TEXT NOT NULL REFERENCES sources(source) ON DELETE CASCADE,
        position INTEGER NOT NULL, title TEXT NOT NULL, text TEXT NOT NULL, PRIMARY KEY (source, position));
      CREATE TABLE IF NOT EXISTS settings (key TEXT PRIMARY KEY, value TEXT NOT NULL);`);
    // Columns added after the first release: older files gain them in place.
    addColumnIfMissing(this.db, 'sources', 'format', "TEXT NOT NULL DEFAULT 'markdown'");
    addColumnIfMissing(this.db, 'sources', 'metadata', "TEXT NOT NULL DEFAULT '{}'");
    addColumnIfMissing(this.db, 'chunks', 'page', 'INTEGER');
    this.db.pragma('foreign_keys = ON');
  }

  transaction<T>(fn: () => T): T {
    return this.db.transaction(fn)();
  }

  hashOf(source: string): string | undefined {
    return (this.db.prepare('SELECT hash FROM sources WHERE source = ?').get(source) as { hash: string } | undefined)?.hash;
  }

  /** Replaces a document's record and all its passages (call it inside `transaction`). */
  putSource(source: string, record: SourceRecord, chunks: SharedSource['chunks']): void {
    this.db.prepare('DELETE FROM chunks WHERE source = ?').run(source);
    this.db
      .prepare(
        `INSERT INTO sources (source, title, hash, indexed_at, format, metadata) VALUES (?, ?, ?, ?, ?, ?)
         ON CONFLICT(source) DO UPDATE SET title = excluded.title, hash = excluded.hash, indexed_at = excluded.indexed_at,
           format = excluded.format, metadata = excluded.metadata`,
      )
      .run(source, record.title, record.hash, record.indexedAt, record.format, record.metadata);
    const insert = this.db.prepare('INSERT INTO chunks (source, position, title, text, page) VALUES (?, ?, ?, ?, ?)');
    for (const c of chunks) insert.run(source, c.position, c.title, c.text, c.page);
  }

  /** Deletes a document and its passages (call it inside `transaction`); returns how many passages it had. */
  deleteSource(source: string): number {
    const n = this.db.prepare('DELETE FROM chunks WHERE source = ?').run(source).changes;
    this.db.prepare('DELETE FROM sources WHERE source = ?').run(source);
    return n;
  }

  list(): KbSourceInfo[] {
    return this.db
      .prepare(
        `SELECT s.source, s.title, s.indexed_at AS indexedAt, count(c.position) AS chunks
         FROM sources s LEFT JOIN chunks c ON c.source = s.source GROUP BY s.source ORDER BY s.source`,
      )
      .all() as KbSourceInfo[];
  }

  hashes(): Map<string, string> {
    const rows = this.db.prepare('SELECT source, hash FROM sources').all() as { source: string; hash: string }[];
    return new Map(rows.map((r) => [r.source, r.hash]));
  }

  shared(source: string): SharedSource | undefined {
    const row = this.db.prepare('SELECT source, title, hash, indexed_at AS indexedAt, format, metadata FROM sources WHERE source = ?').get(source) as
      | Omit<SharedSource, 'chunks'>
      | undefined;
    if (!row) return undefined;
    const chunks = this.db.prepare('SELECT position, title, text, page FROM chunks WHERE source = ? ORDER BY position').all(source) as SharedSource['chunks'];
    return { ...row, chunks };
  }

  /** Every document's format and extra metadata (what its passages' metadata is built from). */
  sourceFormats(): { source: string; format: string; metadata: string }[] {
    return this.db.prepare('SELECT source, format, metadata FROM sources').all() as { source: string; format: string; metadata: string }[];
  }

  /** Every passage, by document and position. */
  passages(): PassageRow[] {
    return this.db.prepare('SELECT source, position, title, text, page FROM chunks ORDER BY source, position').all() as PassageRow[];
  }

  setting(key: string): string | undefined {
    return (this.db.prepare('SELECT value FROM settings WHERE key = ?').get(key) as { value: string } | undefined)?.value;
  }

  setSetting(key: string, value: string): void {
    this.db.prepare('INSERT INTO settings (key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value').run(key, value);
  }

  close(): void {
    if (this.db.open) this.db.close();
  }
}

function addColumnIfMissing(db: Database.Database, table: string, column: string, definition: string): void {
  const columns = db.prepare(`PRAGMA table_info(${table})`).all() as { name: string }[];
  if (!columns.some((c) => c.name === column)) db.exec(`ALTER TABLE ${table} ADD COLUMN ${column} ${definition}`);
}
