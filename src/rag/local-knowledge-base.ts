import { createHash } from 'node:crypto';
import { mkdirSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { basename, dirname, extname, join, relative, sep } from 'node:path';
import Database from 'better-sqlite3';
import type { Attachment, KbAddReport, KbSourceInfo, KnowledgeBase, Source } from '../core/index.ts';
import { Bm25Index } from './bm25.ts';
import { splitMarkdown, type Chunk } from './markdown-splitter.ts';

const SUPPORTED = new Set(['.md', '.markdown', '.txt']);

interface StoredChunk extends Chunk {
  source: string;
}

export interface AddOptions {
  /** Source names are paths relative to this folder (default: each folder given, or a file's own folder). */
  baseDir?: string;
}

/**
 * The knowledge base kept in one SQLite file with a BM25 index in memory. Re-adding a file whose
 * content hash is unchanged is a no-op; a changed file replaces all its passages.
 */
export class LocalKnowledgeBase implements KnowledgeBase {
  private readonly db: Database.Database;
  private index = new Bm25Index<StoredChunk>();

  constructor(file: string) {
    if (file !== ':memory:') mkdirSync(dirname(file), { recursive: true });
    this.db = new Database(file);
    this.db.pragma('journal_mode = WAL');
    this.db.exec(`
      CREATE TABLE IF NOT EXISTS sources (source TEXT PRIMARY KEY, title TEXT NOT NULL, hash TEXT NOT NULL, indexed_at INTEGER NOT NULL);
      CREATE TABLE IF NOT EXISTS chunks (source TEXT NOT NULL REFERENCES sources(source) ON DELETE CASCADE,
        position INTEGER NOT NULL, title TEXT NOT NULL, text TEXT NOT NULL, PRIMARY KEY (source, position));`);
    this.db.pragma('foreign_keys = ON');
    this.rebuildIndex();
  }

  async addPaths(paths: string[], options: AddOptions = {}): Promise<KbAddReport> {
    const report: KbAddReport = { added: [], updated: [], unchanged: [], failed: [] };
    for (const path of paths) {
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
          await this.ingest(source, extname(file), readFileSync(file), report);
        } catch (err) {
          report.failed.push({ source, reason: errorMessage(err) });
        }
      }
    }
    if (report.added.length + report.updated.length > 0) this.rebuildIndex();
    return report;
  }

  async addAttachments(attachments: Attachment[]): Promise<KbAddReport> {
    const report: KbAddReport = { added: [], updated: [], unchanged: [], failed: [] };
    for (const attachment of attachments) {
      const source = basename(attachment.name);
      try {
        if (!attachment.fetch) throw new Error('the platform gave no way to download this file');
        await this.ingest(source, extname(source), Buffer.from(await attachment.fetch()), report);
      } catch (err) {
        report.failed.push({ source, reason: errorMessage(err) });
      }
    }
    if (report.added.length + report.updated.length > 0) this.rebuildIndex();
    return report;
  }

  private async ingest(source: string, extension: string, content: Buffer, report: KbAddReport): Promise<void> {
    const ext = extension.toLowerCase();
    if (!SUPPORTED.has(ext)) {
      report.failed.push({ source, reason: `unsupported file type "${ext || 'none'}" (supported: ${[...SUPPORTED].join(', ')})` });
      return;
    }
    const text = new TextDecoder('utf-8', { fatal: true }).decode(content);
    const hash = createHash('sha256').update(content).digest('hex');
    const existing = this.db.prepare('SELECT hash FROM sources WHERE source = ?').get(source) as { hash: string } | undefined;
    if (existing?.hash === hash) {
      report.unchanged.push(source);
      return;
    }
    const title = /^#\s+(.+)$/m.exec(text)?.[1]?.trim() ?? basename(source, ext);
    const chunks = await splitMarkdown(text, title);
    this.db.transaction(() => {
      this.db.prepare('DELETE FROM chunks WHERE source = ?').run(source);
      this.db
        .prepare('INSERT INTO sources (source, title, hash, indexed_at) VALUES (?, ?, ?, ?) ON CONFLICT(source) DO UPDATE SET title = excluded.title, hash = excluded.hash, indexed_at = excluded.indexed_at')
        .run(source, title, hash, Date.now());
      const insert = this.db.prepare('INSERT INTO chunks (source, position, title, text) VALUES (?, ?, ?, ?)');
      for (const c of chunks) insert.run(source, c.position, c.title, c.text);
    })();
    (existing ? report.updated : report.added).push(source);
  }

  async list(): Promise<KbSourceInfo[]> {
    return this.db
      .prepare(
        `SELECT s.source, s.title, s.indexed_at AS indexedAt, count(c.position) AS chunks
         FROM sources s LEFT JOIN chunks c ON c.source = s.source GROUP BY s.source ORDER BY s.source`,
      )
      .all() as KbSourceInfo[];
  }

  async remove(source: string): Promise<number> {
    const removed = this.db.transaction(() => {
      const n = this.db.prepare('DELETE FROM chunks WHERE source = ?').run(source).changes;
      this.db.prepare('DELETE FROM sources WHERE source = ?').run(source);
      return n;
    })();
    if (removed > 0) this.rebuildIndex();
    return removed;
  }

  async search(query: string, k: number): Promise<Source[]> {
    return this.index.search(query, k).map(({ doc, score }) => ({ source: doc.source, title: doc.title, text: doc.text, score }));
  }

  get chunkCount(): number {
    return this.index.size;
  }

  close(): void {
    if (this.db.open) this.db.close();
  }

  private rebuildIndex(): void {
    const index = new Bm25Index<StoredChunk>();
    const rows = this.db.prepare('SELECT source, position, title, text FROM chunks ORDER BY source, position').all() as StoredChunk[];
    // The heading path is part of what a passage is about ("Sick leave" answers "sick days?").
    for (const row of rows) index.add(row, `${row.title}\n${row.text}`);
    this.index = index;
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

function errorMessage(err: unknown): string {
  if (err instanceof TypeError && /encoded data was not valid/i.test(err.message)) return 'not valid UTF-8 text';
  return err instanceof Error ? err.message : String(err);
}
