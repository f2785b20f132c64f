import { randomUUID } from 'node:crypto';
import { existsSync, mkdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import Database from 'better-sqlite3';
import type {
  AnswerRecord,
  AuditDenial,
  AuditEntry,
  BotStore,
  ClaimOptions,
  FeedbackInput,
  FeedbackRecord,
  NewAnswerRecord,
  RatedAnswer,
  RatedAnswersOptions,
  StoreOpener,
} from './store.ts';
import { ANONYMOUS_WEB_USER_PREFIX } from './store.ts';
import { toAnswer, toFeedback, toJob, ratedAnswer, type AnswerRow, type FeedbackRow, type JobRow } from './store-rows.ts';
import type { JobRecord, JobStore } from './jobs.ts';
import type { ConversationTurn, Platform, Vote } from './types.ts';

/**
 * Schema history. Append a migration, never edit one that has shipped: `PRAGMA user_version`
 * records how far a database has come.
 */
const MIGRATIONS: string[] = [
  `CREATE TABLE processed_events (
     platform TEXT NOT NULL,
     event_id TEXT NOT NULL,
     at INTEGER NOT NULL,
     PRIMARY KEY (platform, event_id)
   );
   CREATE INDEX processed_events_at ON processed_events(at);
   CREATE TABLE answers (
     id TEXT PRIMARY KEY,
     created_at INTEGER NOT NULL,
     platform TEXT NOT NULL,
     workspace TEXT NOT NULL,
     channel TEXT NOT NULL,
     thread TEXT,
     message_id TEXT NOT NULL,
     user_id TEXT NOT NULL,
     user_name TEXT,
     question TEXT NOT NULL,
     passages TEXT NOT NULL,
     prompt TEXT NOT NULL,
     output TEXT NOT NULL,
     model_name TEXT NOT NULL,
     model_version TEXT NOT NULL,
     latency_ms INTEGER NOT NULL,
     reply_id TEXT
   );
   CREATE INDEX answers_reply ON answers(platform, reply_id);
   CREATE TABLE feedback (
     answer_id TEXT NOT NULL REFERENCES answers(id) ON DELETE CASCADE,
     platform TEXT NOT NULL,
     user_id TEXT NOT NULL,
     value INTEGER NOT NULL CHECK (value IN (-1, 1)),
     comment TEXT,
     created_at INTEGER NOT NULL,
     updated_at INTEGER NOT NULL,
     PRIMARY KEY (answer_id, platform, user_id)
   );
   CREATE TABLE turns (
     conversation TEXT NOT NULL,
     seq INTEGER PRIMARY KEY AUTOINCREMENT,
     role TEXT NOT NULL,
     text TEXT NOT NULL,
     at INTEGER NOT NULL
   );
   CREATE INDEX turns_conversation ON turns(conversation, seq);
   CREATE TABLE audit_log (
     seq INTEGER PRIMARY KEY AUTOINCREMENT,
     at INTEGER NOT NULL,
     actor TEXT NOT NULL,
     action TEXT NOT NULL,
     detail TEXT NOT NULL
   );`,
  `CREATE TABLE jobs (
     id INTEGER PRIMARY KEY AUTOINCREMENT,
     kind TEXT NOT NULL,
     params TEXT NOT NULL,
     status TEXT NOT NULL,
     requested_by TEXT NOT NULL,
     created_at INTEGER NOT NULL,
     started_at INTEGER,
     finished_at INTEGER,
     progress TEXT,
     result TEXT,
     error TEXT,
     run_dir TEXT,
     resumes INTEGER REFERENCES jobs(id)
   );
   CREATE INDEX jobs_status ON jobs(status);`,
  // A claim is a lease until the Bot confirms it (an answer or a command reply exists): a claim
  // left by a refused or crashed attempt expires, so the client's retry is answered, not 409'd.
  // Refused commands are counted per actor, command and hour instead of one audit row each,
  // so a flood of them cannot push real admin actions out of view or grow the table unbounded.
  `ALTER TABLE processed_events ADD COLUMN done INTEGER NOT NULL DEFAULT 1;
   CREATE TABLE audit_denials (
     hour INTEGER NOT NULL,
     actor TEXT NOT NULL,
     command TEXT NOT NULL,
     count INTEGER NOT NULL,
     last_at INTEGER NOT NULL,
     PRIMARY KEY (hour, actor, command)
   );`,
];

export interface SqliteStoreOptions {
  /** How long processed event ids are kept; platforms stop redelivering after hours, not weeks. */
  eventRetentionMs?: number;
  /** How long a statement waits for a lock another connection holds before failing SQLITE_BUSY (default 5 s). */
  busyTimeoutMs?: number;
  /** How long audit entries and denial counts are kept (TEAMLLM_AUDIT_RETENTION_DAYS); default 365 days. */
  auditRetentionMs?: number;
}

/** The store's file under $TEAMLLM_HOME: the one place that names it. */
export function storeFile(home: string): string {
  return join(home, 'teamllm.db');
}

/** The home's SQLite store, opened on demand (training jobs read the votes through this). */
export function sqliteStoreIn(home: string): StoreOpener {
  const file = storeFile(home);
  return { location: file, open: () => (existsSync(file) ? new SqliteStore(file) : undefined) };
}

/** The default BotStore: one SQLite file in WAL mode, safe for one writer process. */
export class SqliteStore implements BotStore, JobStore {
  readonly db: Database.Database;
  private readonly eventRetentionMs: number;
  private readonly auditRetentionMs: number;
  private claims = 0;
  private audits = 0;
  private readonly statements = new Map<string, Database.Statement>();

  constructor(file: string, options: SqliteStoreOptions = {}) {
    if (file !== ':memory:') mkdirSync(dirname(file), { recursive: true });
    this.db = new Database(file);
    // Wait for another process's lock rather than fail (set first: switching to WAL needs one too).
    this.db.pragma(`busy_timeout = ${Math.max(0, Math.floor(options.busyTimeoutMs ?? 5000))}`);
    this.db.pragma('journal_mode = WAL');
    this.db.pragma('foreign_keys = ON');
    this.eventRetentionMs = options.eventRetentionMs ?? 7 * 24 * 3600 * 1000;
    this.auditRetentionMs = options.auditRetentionMs ?? 365 * 24 * 3600 * 1000;
    this.migrate();
    this.pruneAudit();
  }

  /** Prepared once per SQL text: preparing on every call costs more than most of these queries. */
  private sql(text: string): Database.Statement {
    let statement = this.statements.get(text);
    if (!statement) this.statements.set(text, (statement = this.db.prepare(text)));
    return statement;
  }

  get schemaVersion(): number {
    return this.db.pragma('user_version', { simple: true }) as number;
  }

  private migrate(): void {
    // Several processes may open a new database at once (CLI commands beside `serve`): each step
    // takes the write lock first (BEGIN IMMEDIATE) and re-reads how far the file has come, so no
    // migration runs twice.
    const step = this.db.transaction(() => {
      const version = this.schemaVersion;
      if (version >= MIGRATIONS.length) return false;
      this.db.exec(MIGRATIONS[version]!);
      this.db.pragma(`user_version = ${version + 1}`);
      return true;
    });
    while (step.immediate()) {
      // next migration
    }
  }

  async claimEvent(platform: Platform, eventId: string, options: ClaimOptions = {}): Promise<boolean> {
    const now = Date.now();
    const lease = options.leaseMs !== undefined;
    const result = this.sql('INSERT OR IGNORE INTO processed_events (platform, event_id, at, done) VALUES (?, ?, ?, ?)')
      .run(platform, eventId, now, lease ? 0 : 1);
    if (++this.claims % 1000 === 0) {
      this.sql('DELETE FROM processed_events WHERE at < ?').run(now - this.eventRetentionMs);
    }
    if (result.changes === 1) return true;
    if (!lease) return false;
    // An unconfirmed claim older than its lease was left by an attempt that never answered (a crash).
    return this.sql('UPDATE processed_events SET at = ? WHERE platform = ? AND event_id = ? AND done = 0 AND at < ?')
      .run(now, platform, eventId, now - options.leaseMs!).changes === 1;
  }

  async confirmEvent(platform: Platform, eventId: string): Promise<void> {
    this.sql('UPDATE processed_events SET done = 1 WHERE platform = ? AND event_id = ?').run(platform, eventId);
  }

  async releaseEvent(platform: Platform, eventId: string): Promise<void> {
    this.sql('DELETE FROM processed_events WHERE platform = ? AND event_id = ? AND done = 0').run(platform, eventId);
  }

  async saveAnswer(record: NewAnswerRecord): Promise<AnswerRecord> {
    const id = randomUUID();
    const createdAt = Date.now();
    this.sql(
        `INSERT INTO answers (id, created_at, platform, workspace, channel, thread, message_id, user_id, user_name,
           question, passages, prompt, output, model_name, model_version, latency_ms)
         VALUES (@id, @createdAt, @platform, @workspace, @channel, @thread, @messageId, @userId, @userName,
           @question, @passages, @prompt, @output, @modelName, @modelVersion, @latencyMs)`,
      )
      .run({
        ...record,
        id,
        createdAt,
        thread: record.thread ?? null,
        userName: record.userName ?? null,
        passages: JSON.stringify(record.passages),
      });
    return { ...record, id, createdAt };
  }

  async getAnswer(id: string): Promise<AnswerRecord | undefined> {
    const row = this.sql('SELECT * FROM answers WHERE id = ?').get(id) as AnswerRow | undefined;
    return row && toAnswer(row);
  }

  async setAnswerReply(answerId: string, replyId: string): Promise<void> {
    this.sql('UPDATE answers SET reply_id = ? WHERE id = ?').run(replyId, answerId);
  }

  async findAnswerByReply(platform: Platform, replyId: string): Promise<AnswerRecord | undefined> {
    const row = this.sql('SELECT * FROM answers WHERE platform = ? AND reply_id = ? ORDER BY created_at DESC LIMIT 1')
      .get(platform, replyId) as AnswerRow | undefined;
    return row && toAnswer(row);
  }

  async recordFeedback(input: FeedbackInput): Promise<FeedbackRecord> {
    const now = Date.now();
    const row = this.sql(
        `INSERT INTO feedback (answer_id, platform, user_id, value, comment, created_at, updated_at)
         VALUES (?, ?, ?, ?, ?, ?, ?)
         ON CONFLICT (answer_id, platform, user_id)
         DO UPDATE SET value = excluded.value, comment = coalesce(excluded.comment, feedback.comment),
                       updated_at = excluded.updated_at
         RETURNING *`,
      )
      .get(input.answerId, input.platform, input.userId, input.value, input.comment ?? null, now, now) as FeedbackRow;
    return toFeedback(row);
  }

  async removeFeedback(answerId: string, platform: Platform, userId: string): Promise<boolean> {
    return (
      this.sql('DELETE FROM feedback WHERE answer_id = ? AND platform = ? AND user_id = ?')
        .run(answerId, platform, userId).changes > 0
    );
  }

  async feedbackFor(answerId: string): Promise<FeedbackRecord[]> {
    return (this.sql('SELECT * FROM feedback WHERE answer_id = ? ORDER BY created_at, rowid').all(answerId) as FeedbackRow[]).map(
      toFeedback,
    );
  }

  async feedbackCounts(): Promise<{ up: number; down: number }> {
    const row = this.sql(`SELECT coalesce(sum(value = 1), 0) AS up, coalesce(sum(value = -1), 0) AS down FROM feedback`)
      .get() as { up: number; down: number };
    return { up: row.up, down: row.down };
  }

  /** Votes per UTC day (by when they were last cast or changed), oldest first, for the admin page. */
  async feedbackByDay(days: number): Promise<{ day: string; up: number; down: number; answers: number }[]> {
    const since = Date.now() - days * 86_400_000;
    const votes = this.sql(
      `SELECT date(updated_at / 1000, 'unixepoch') AS day, sum(value = 1) AS up, sum(value = -1) AS down FROM feedback WHERE updated_at >= ? GROUP BY day`,
    ).all(since) as { day: string; up: number; down: number }[];
    const answers = this.sql(`SELECT date(created_at / 1000, 'unixepoch') AS day, count(*) AS n FROM answers WHERE created_at >= ? GROUP BY day`).all(since) as {
      day: string;
      n: number;
    }[];
    const byDay = new Map<string, { day: string; up: number; down: number; answers: number }>();
    for (const v of votes) byDay.set(v.day, { day: v.day, up: v.up, down: v.down, answers: 0 });
    for (const a of answers) byDay.set(a.day, { ...(byDay.get(a.day) ?? { day: a.day, up: 0, down: 0 }), answers: a.n });
    return [...byDay.values()].sort((a, b) => a.day.localeCompare(b.day));
  }

  async appendTurn(conversation: string, turn: ConversationTurn): Promise<void> {
    this.sql('INSERT INTO turns (conversation, role, text, at) VALUES (?, ?, ?, ?)').run(conversation, turn.role, turn.text, turn.at);
  }

  async recentTurns(conversation: string, limit: number): Promise<ConversationTurn[]> {
    const rows = this.sql('SELECT role, text, at FROM turns WHERE conversation = ? ORDER BY seq DESC LIMIT ?')
      .all(conversation, limit) as ConversationTurn[];
    return rows.reverse();
  }

  async clearConversation(conversation: string): Promise<void> {
    this.sql('DELETE FROM turns WHERE conversation = ?').run(conversation);
  }

  async audit(entry: Omit<AuditEntry, 'at'>): Promise<void> {
    this.sql('INSERT INTO audit_log (at, actor, action, detail) VALUES (?, ?, ?, ?)')
      .run(Date.now(), entry.actor, entry.action, JSON.stringify(entry.detail));
    if (++this.audits % 1000 === 0) this.pruneAudit();
  }

  async auditLog(limit: number): Promise<AuditEntry[]> {
    const rows = this.sql('SELECT at, actor, action, detail FROM audit_log ORDER BY seq DESC LIMIT ?').all(limit) as {
      at: number;
      actor: string;
      action: string;
      detail: string;
    }[];
    return rows.map((r) => ({ ...r, detail: JSON.parse(r.detail) as Record<string, unknown> }));
  }

  async auditDenial(actor: string, command: string): Promise<void> {
    const now = Date.now();
    this.sql(
      `INSERT INTO audit_denials (hour, actor, command, count, last_at) VALUES (?, ?, ?, 1, ?)
       ON CONFLICT (hour, actor, command) DO UPDATE SET count = count + 1, last_at = excluded.last_at`,
    ).run(Math.floor(now / 3_600_000) * 3_600_000, actor, command, now);
    if (++this.audits % 1000 === 0) this.pruneAudit();
  }

  async auditDenials(limit: number): Promise<AuditDenial[]> {
    return this.sql('SELECT hour, actor, command, count, last_at AS lastAt FROM audit_denials ORDER BY last_at DESC LIMIT ?').all(limit) as AuditDenial[];
  }

  /** Drops audit entries and denial counts older than the retention setting. */
  pruneAudit(now = Date.now()): void {
    const before = now - this.auditRetentionMs;
    this.sql('DELETE FROM audit_log WHERE at < ?').run(before);
    this.sql('DELETE FROM audit_denials WHERE last_at < ?').run(before);
  }

  async *ratedAnswers(options: RatedAnswersOptions = {}): AsyncIterable<RatedAnswer> {
    // Anonymous web sessions' votes are left out on request (RatedAnswersOptions.anonymousVotes).
    const counted = options.anonymousVotes === false ? `NOT (platform = 'web' AND user_id LIKE '${ANONYMOUS_WEB_USER_PREFIX}%')` : '1';
    const votes = this.sql(`SELECT value, comment FROM feedback WHERE answer_id = ? AND ${counted}`);
    const rows = this.sql(`SELECT * FROM answers WHERE id IN (SELECT answer_id FROM feedback WHERE ${counted}) ORDER BY created_at, rowid`)
      .iterate() as IterableIterator<AnswerRow>;
    // Collect first: a live better-sqlite3 iterator blocks other statements on the connection.
    const answers = [...rows];
    for (const row of answers) {
      yield ratedAnswer(row, votes.all(row.id) as { value: Vote; comment: string | null }[]);
    }
  }

  async createJob(job: { kind: string; params: Record<string, string>; requestedBy: string; runDir?: string; resumes?: number }): Promise<JobRecord> {
    const row = this.sql(
      `INSERT INTO jobs (kind, params, status, requested_by, created_at, run_dir, resumes)
       VALUES (?, ?, 'queued', ?, ?, ?, ?) RETURNING *`,
    ).get(job.kind, JSON.stringify(job.params), job.requestedBy, Date.now(), job.runDir ?? null, job.resumes ?? null) as JobRow;
    return toJob(row);
  }

  async updateJob(id: number, patch: Partial<Omit<JobRecord, 'id' | 'kind' | 'createdAt'>>): Promise<JobRecord> {
    const columns: Record<string, unknown> = {};
    if (patch.params !== undefined) columns.params = JSON.stringify(patch.params);
    if (patch.status !== undefined) columns.status = patch.status;
    if (patch.requestedBy !== undefined) columns.requested_by = patch.requestedBy;
    if (patch.startedAt !== undefined) columns.started_at = patch.startedAt;
    if (patch.finishedAt !== undefined) columns.finished_at = patch.finishedAt;
    if (patch.progress !== undefined) columns.progress = JSON.stringify(patch.progress);
    if (patch.result !== undefined) columns.result = JSON.stringify(patch.result);
    if (patch.error !== undefined) columns.error = patch.error;
    if (patch.runDir !== undefined) columns.run_dir = patch.runDir;
    const names = Object.keys(columns);
    if (names.length > 0) {
      this.sql(`UPDATE jobs SET ${names.map((n) => `${n} = @${n}`).join(', ')} WHERE id = @id`).run({ ...columns, id });
    }
    const job = await this.getJob(id);
    if (!job) throw new Error(`no job ${id}`);
    return job;
  }

  async getJob(id: number): Promise<JobRecord | undefined> {
    const row = this.sql('SELECT * FROM jobs WHERE id = ?').get(id) as JobRow | undefined;
    return row && toJob(row);
  }

  async listJobs(limit: number): Promise<JobRecord[]> {
    return (this.sql('SELECT * FROM jobs ORDER BY id DESC LIMIT ?').all(limit) as JobRow[]).map(toJob);
  }

  async interruptRunningJobs(): Promise<number> {
    return this.sql(`UPDATE jobs SET status = 'interrupted', finished_at = ? WHERE status = 'running'`).run(Date.now()).changes;
  }

  async close(): Promise<void> {
    if (this.db.open) this.db.close();
  }
}
