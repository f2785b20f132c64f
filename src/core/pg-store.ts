import { randomUUID } from 'node:crypto';
import pg from 'pg';
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
import type { JobLeaseStore, JobRecord, JobStore } from './jobs.ts';
import type { RateLimit } from './rate-limiter.ts';
import type { ConversationTurn, Platform, Vote } from './types.ts';

/**
 * Schema history of the PostgreSQL store (the same data as sqlite-store.ts, plus what several
 * processes share: job leases, rate-limit buckets). Append a migration, never edit one that has
 * shipped: `teamllm_migrations` records which ran. Times are milliseconds since the epoch
 * (BIGINT), as in SQLite, so both stores answer the same numbers.
 */
const MIGRATIONS: string[] = [
  `CREATE TABLE processed_events (
     platform TEXT NOT NULL,
     event_id TEXT NOT NULL,
     at BIGINT NOT NULL,
     done BOOLEAN NOT NULL DEFAULT TRUE,
     PRIMARY KEY (platform, event_id)
   );
   CREATE INDEX processed_events_at ON processed_events(at);
   CREATE TABLE answers (
     id TEXT PRIMARY KEY,
     seq BIGSERIAL NOT NULL,
     created_at BIGINT NOT NULL,
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
     latency_ms BIGINT NOT NULL,
     reply_id TEXT
   );
   CREATE INDEX answers_reply ON answers(platform, reply_id);
   CREATE INDEX answers_created ON answers(created_at, seq);
   CREATE TABLE feedback (
     answer_id TEXT NOT NULL REFERENCES answers(id) ON DELETE CASCADE,
     platform TEXT NOT NULL,
     user_id TEXT NOT NULL,
     value SMALLINT NOT NULL CHECK (value IN (-1, 1)),
     comment TEXT,
     created_at BIGINT NOT NULL,
     updated_at BIGINT NOT NULL,
     seq BIGSERIAL NOT NULL,
     PRIMARY KEY (answer_id, platform, user_id)
   );
   CREATE TABLE turns (
     seq BIGSERIAL PRIMARY KEY,
     conversation TEXT NOT NULL,
     role TEXT NOT NULL,
     text TEXT NOT NULL,
     at BIGINT NOT NULL
   );
   CREATE INDEX turns_conversation ON turns(conversation, seq);
   CREATE TABLE audit_log (
     seq BIGSERIAL PRIMARY KEY,
     at BIGINT NOT NULL,
     actor TEXT NOT NULL,
     action TEXT NOT NULL,
     detail TEXT NOT NULL
   );
   CREATE TABLE audit_denials (
     hour BIGINT NOT NULL,
     actor TEXT NOT NULL,
     command TEXT NOT NULL,
     count INTEGER NOT NULL,
     last_at BIGINT NOT NULL,
     PRIMARY KEY (hour, actor, command)
   );
   CREATE TABLE jobs (
     id BIGSERIAL PRIMARY KEY,
     kind TEXT NOT NULL,
     params TEXT NOT NULL,
     status TEXT NOT NULL,
     requested_by TEXT NOT NULL,
     created_at BIGINT NOT NULL,
     started_at BIGINT,
     finished_at BIGINT,
     progress TEXT,
     result TEXT,
     error TEXT,
     run_dir TEXT,
     resumes BIGINT REFERENCES jobs(id),
     lease_owner TEXT,
     lease_until BIGINT
   );
   CREATE INDEX jobs_status ON jobs(status);
   CREATE TABLE rate_buckets (
     key TEXT PRIMARY KEY,
     tokens DOUBLE PRECISION NOT NULL,
     at BIGINT NOT NULL,
     allowed BOOLEAN NOT NULL
   );
   CREATE INDEX rate_buckets_at ON rate_buckets(at);`,
  // Knowledge bases shared by every process (src/rag/pg-knowledge-sync.ts): documents and their
  // passages, and a change feed each process follows (polled by seq, woken by NOTIFY teamllm_kb).
  `CREATE TABLE kb_sources (
     kb TEXT NOT NULL,
     source TEXT NOT NULL,
     title TEXT NOT NULL,
     hash TEXT NOT NULL,
     indexed_at BIGINT NOT NULL,
     format TEXT NOT NULL,
     metadata TEXT NOT NULL,
     PRIMARY KEY (kb, source)
   );
   CREATE TABLE kb_chunks (
     kb TEXT NOT NULL,
     source TEXT NOT NULL,
     position INTEGER NOT NULL,
     title TEXT NOT NULL,
     text TEXT NOT NULL,
     page INTEGER,
     PRIMARY KEY (kb, source, position),
     FOREIGN KEY (kb, source) REFERENCES kb_sources (kb, source) ON DELETE CASCADE
   );
   CREATE TABLE kb_changes (
     seq BIGSERIAL PRIMARY KEY,
     kb TEXT NOT NULL,
     source TEXT NOT NULL,
     at BIGINT NOT NULL
   );
   CREATE INDEX kb_changes_kb ON kb_changes(kb, seq);`,
];

/** Advisory lock keys (one 64-bit number each, arbitrary but fixed). */
const MIGRATION_LOCK = 7_316_650_001;
const PROMOTION_LOCK = 7_316_650_002;
/** Held while a knowledge-base change is written, so change numbers are handed out in commit order. */
export const KNOWLEDGE_LOCK = 7_316_650_003;

/** How a PostgreSQL URL is shown in logs and messages: never with its password. */
export function redactDatabaseUrl(url: string): string {
  try {
    const parsed = new URL(url);
    if (parsed.password) parsed.password = '***';
    for (const key of [...parsed.searchParams.keys()]) if (/pass/i.test(key)) parsed.searchParams.set(key, '***');
    return parsed.toString();
  } catch {
    return 'postgres://(unparsable URL)';
  }
}

/** Whether a TEAMLLM_DATABASE_URL names PostgreSQL. */
export function isPostgresUrl(url: string | undefined): url is string {
  return url !== undefined && /^postgres(ql)?:\/\//i.test(url);
}

// BIGINT (oid 20) arrives as a string by default; our numbers (ms timestamps, ids) fit a double.
const TYPES = {
  getTypeParser: ((oid: number, format?: 'text' | 'binary') =>
    oid === 20 ? (value: string) => Number(value) : pg.types.getTypeParser(oid, format as 'text')) as pg.CustomTypesConfig['getTypeParser'],
};

/** PostgreSQL's answers rows also carry their insertion order (`seq`), which pages the exports. */
interface PgAnswerRow extends AnswerRow {
  seq: number;
}

export interface PgStoreOptions {
  /** Connections in this process's pool (TEAMLLM_DATABASE_POOL_SIZE; default 10). */
  poolSize?: number;
  /** How long processed event ids are kept; platforms stop redelivering after hours, not weeks. */
  eventRetentionMs?: number;
  /** How long audit entries and denial counts are kept (TEAMLLM_AUDIT_RETENTION_DAYS); default 365 days. */
  auditRetentionMs?: number;
  /** Reported to the pool's error handler (a connection the server dropped while idle). */
  onPoolError?: (err: Error) => void;
}

type Queryable = Pick<pg.Pool | pg.PoolClient, 'query'>;

/**
 * The BotStore and JobStore on PostgreSQL (TEAMLLM_DATABASE_URL): what teamllm.db holds, shared
 * by every bot process of a company, on any number of machines. Claims and votes are single
 * statements (INSERT … ON CONFLICT, a guarded UPDATE), so a redelivery handled by two processes
 * at once is claimed by exactly one; jobs are leased (claimNextJob, renewJobLease) so exactly one
 * process runs each. The schema is migrated at start under an advisory lock.
 */
export class PgStore implements BotStore, JobStore, JobLeaseStore {
  readonly pool: pg.Pool;
  /** Resolves once the schema is migrated; every method waits for it. */
  readonly ready: Promise<void>;
  readonly location: string;
  private readonly url: string;
  private readonly eventRetentionMs: number;
  private readonly auditRetentionMs: number;
  private claims = 0;
  private audits = 0;
  private takes = 0;
  private closed = false;

  constructor(url: string, options: PgStoreOptions = {}) {
    this.location = redactDatabaseUrl(url);
    this.url = url;
    this.pool = new pg.Pool({ connectionString: url, max: Math.max(1, options.poolSize ?? 10), types: TYPES });
    // An idle connection the server closed must not crash the process; the next query reconnects.
    this.pool.on('error', (err) => options.onPoolError?.(err));
    this.eventRetentionMs = options.eventRetentionMs ?? 7 * 24 * 3600 * 1000;
    this.auditRetentionMs = options.auditRetentionMs ?? 365 * 24 * 3600 * 1000;
    this.ready = this.migrate().then(() => this.pruneAudit());
    // Callers that never await `ready` still see the failure on their first query.
    this.ready.catch(() => undefined);
  }

  /** Opens the store and waits for its schema (fails with a message without the password). */
  static async open(url: string, options: PgStoreOptions = {}): Promise<PgStore> {
    const store = new PgStore(url, options);
    try {
      await store.ready;
    } catch (err) {
      await store.pool.end().catch(() => undefined);
      throw new Error(`cannot open the PostgreSQL store at ${store.location}: ${err instanceof Error ? err.message : String(err)}`);
    }
    return store;
  }

  private async q<R extends pg.QueryResultRow>(text: string, values: unknown[] = []): Promise<pg.QueryResult<R>> {
    await this.ready;
    return this.pool.query<R>(text, values);
  }

  /** Runs `work` in one transaction on one connection. */
  async transaction<T>(work: (client: Queryable) => Promise<T>): Promise<T> {
    await this.ready;
    const client = await this.pool.connect();
    try {
      await client.query('BEGIN');
      const result = await work(client);
      await client.query('COMMIT');
      return result;
    } catch (err) {
      await client.query('ROLLBACK').catch(() => undefined);
      throw err;
    } finally {
      client.release();
    }
  }

  get schemaVersionTarget(): number {
    return MIGRATIONS.length;
  }

  async schemaVersion(): Promise<number> {
    const { rows } = await this.q<{ v: number }>('SELECT coalesce(max(version), 0)::int AS v FROM teamllm_migrations');
    return rows[0]!.v;
  }

  private async migrate(): Promise<void> {
    // Several processes may start together against a new database: the transaction-scoped
    // advisory lock lets one migrate while the others wait, then they find nothing left to do.
    // DDL is transactional in PostgreSQL, so a migration that fails leaves no half-made schema.
    const client = await this.pool.connect();
    try {
      await client.query('BEGIN');
      await client.query('SELECT pg_advisory_xact_lock($1)', [MIGRATION_LOCK]);
      await client.query(`CREATE TABLE IF NOT EXISTS teamllm_migrations (version INTEGER PRIMARY KEY, applied_at BIGINT NOT NULL)`);
      const { rows } = await client.query<{ v: number }>('SELECT coalesce(max(version), 0)::int AS v FROM teamllm_migrations');
      for (let version = rows[0]!.v; version < MIGRATIONS.length; version++) {
        await client.query(MIGRATIONS[version]!);
        await client.query('INSERT INTO teamllm_migrations (version, applied_at) VALUES ($1, $2)', [version + 1, Date.now()]);
      }
      await client.query('COMMIT');
    } catch (err) {
      await client.query('ROLLBACK').catch(() => undefined);
      throw err;
    } finally {
      client.release();
    }
  }

  async claimEvent(platform: Platform, eventId: string, options: ClaimOptions = {}): Promise<boolean> {
    const now = Date.now();
    const lease = options.leaseMs !== undefined;
    const inserted = await this.q('INSERT INTO processed_events (platform, event_id, at, done) VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING', [
      platform,
      eventId,
      now,
      !lease,
    ]);
    if (++this.claims % 1000 === 0) await this.q('DELETE FROM processed_events WHERE at < $1', [now - this.eventRetentionMs]);
    if (inserted.rowCount === 1) return true;
    if (!lease) return false;
    // An unconfirmed claim older than its lease was left by an attempt that never answered. Two
    // processes taking it over at once: the row lock serialises them, and the second re-checks
    // `at` after the first's commit, so only one wins.
    const taken = await this.q('UPDATE processed_events SET at = $1 WHERE platform = $2 AND event_id = $3 AND NOT done AND at < $4', [
      now,
      platform,
      eventId,
      now - options.leaseMs!,
    ]);
    return taken.rowCount === 1;
  }

  async confirmEvent(platform: Platform, eventId: string): Promise<void> {
    await this.q('UPDATE processed_events SET done = TRUE WHERE platform = $1 AND event_id = $2', [platform, eventId]);
  }

  async releaseEvent(platform: Platform, eventId: string): Promise<void> {
    await this.q('DELETE FROM processed_events WHERE platform = $1 AND event_id = $2 AND NOT done', [platform, eventId]);
  }

  async saveAnswer(record: NewAnswerRecord): Promise<AnswerRecord> {
    const id = randomUUID();
    const createdAt = Date.now();
    await this.q(
      `INSERT INTO answers (id, created_at, platform, workspace, channel, thread, message_id, user_id, user_name,
         question, passages, prompt, output, model_name, model_version, latency_ms)
       VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16)`,
      [
        id,
        createdAt,
        record.platform,
        record.workspace,
        record.channel,
        record.thread ?? null,
        record.messageId,
        record.userId,
        record.userName ?? null,
        record.question,
        JSON.stringify(record.passages),
        record.prompt,
        record.output,
        record.modelName,
        record.modelVersion,
        Math.round(record.latencyMs),
      ],
    );
    return { ...record, id, createdAt };
  }

  async getAnswer(id: string): Promise<AnswerRecord | undefined> {
    const { rows } = await this.q<PgAnswerRow>('SELECT * FROM answers WHERE id = $1', [id]);
    return rows[0] && toAnswer(rows[0]);
  }

  async setAnswerReply(answerId: string, replyId: string): Promise<void> {
    await this.q('UPDATE answers SET reply_id = $1 WHERE id = $2', [replyId, answerId]);
  }

  async findAnswerByReply(platform: Platform, replyId: string): Promise<AnswerRecord | undefined> {
    const { rows } = await this.q<PgAnswerRow>('SELECT * FROM answers WHERE platform = $1 AND reply_id = $2 ORDER BY created_at DESC, seq DESC LIMIT 1', [
      platform,
      replyId,
    ]);
    return rows[0] && toAnswer(rows[0]);
  }

  async recordFeedback(input: FeedbackInput): Promise<FeedbackRecord> {
    const now = Date.now();
    // One statement: a vote cast through two processes at once ends as one row (the later value).
    const { rows } = await this.q<FeedbackRow>(
      `INSERT INTO feedback (answer_id, platform, user_id, value, comment, created_at, updated_at)
       VALUES ($1, $2, $3, $4, $5, $6, $6)
       ON CONFLICT (answer_id, platform, user_id)
       DO UPDATE SET value = excluded.value, comment = coalesce(excluded.comment, feedback.comment), updated_at = excluded.updated_at
       RETURNING answer_id, platform, user_id, value, comment, created_at, updated_at`,
      [input.answerId, input.platform, input.userId, input.value, input.comment ?? null, now],
    );
    return toFeedback(rows[0]!);
  }

  async removeFeedback(answerId: string, platform: Platform, userId: string): Promise<boolean> {
    const { rowCount } = await this.q('DELETE FROM feedback WHERE answer_id = $1 AND platform = $2 AND user_id = $3', [answerId, platform, userId]);
    return (rowCount ?? 0) > 0;
  }

  async feedbackFor(answerId: string): Promise<FeedbackRecord[]> {
    const { rows } = await this.q<FeedbackRow>('SELECT * FROM feedback WHERE answer_id = $1 ORDER BY created_at, seq', [answerId]);
    return rows.map(toFeedback);
  }

  async feedbackCounts(): Promise<{ up: number; down: number }> {
    const { rows } = await this.q<{ up: number; down: number }>(
      'SELECT count(*) FILTER (WHERE value = 1)::int AS up, count(*) FILTER (WHERE value = -1)::int AS down FROM feedback',
    );
    return { up: rows[0]!.up, down: rows[0]!.down };
  }

  /** Votes per UTC day (by when they were last cast or changed), oldest first, for the admin page. */
  async feedbackByDay(days: number): Promise<{ day: string; up: number; down: number; answers: number }[]> {
    const since = Date.now() - days * 86_400_000;
    const day = (column: string) => `to_char(to_timestamp(${column} / 1000.0) AT TIME ZONE 'UTC', 'YYYY-MM-DD')`;
    const votes = await this.q<{ day: string; up: number; down: number }>(
      `SELECT ${day('updated_at')} AS day, count(*) FILTER (WHERE value = 1)::int AS up, count(*) FILTER (WHERE value = -1)::int AS down
       FROM feedback WHERE updated_at >= $1 GROUP BY 1`,
      [since],
    );
    const answers = await this.q<{ day: string; n: number }>(`SELECT ${day('created_at')} AS day, count(*)::int AS n FROM answers WHERE created_at >= $1 GROUP BY 1`, [
      since,
    ]);
    const byDay = new Map<string, { day: string; up: number; down: number; answers: number }>();
    for (const v of votes.rows) byDay.set(v.day, { day: v.day, up: v.up, down: v.down, answers: 0 });
    for (const a of answers.rows) byDay.set(a.day, { ...(byDay.get(a.day) ?? { day: a.day, up: 0, down: 0 }), answers: a.n });
    return [...byDay.values()].sort((a, b) => a.day.localeCompare(b.day));
  }

  async appendTurn(conversation: string, turn: ConversationTurn): Promise<void> {
    await this.q('INSERT INTO turns (conversation, role, text, at) VALUES ($1, $2, $3, $4)', [conversation, turn.role, turn.text, turn.at]);
  }

  async recentTurns(conversation: string, limit: number): Promise<ConversationTurn[]> {
    const { rows } = await this.q<ConversationTurn>('SELECT role, text, at FROM turns WHERE conversation = $1 ORDER BY seq DESC LIMIT $2', [conversation, limit]);
    return rows.reverse();
  }

  async clearConversation(conversation: string): Promise<void> {
    await this.q('DELETE FROM turns WHERE conversation = $1', [conversation]);
  }

  async audit(entry: Omit<AuditEntry, 'at'>): Promise<void> {
    await this.q('INSERT INTO audit_log (at, actor, action, detail) VALUES ($1, $2, $3, $4)', [Date.now(), entry.actor, entry.action, JSON.stringify(entry.detail)]);
    if (++this.audits % 1000 === 0) await this.pruneAudit();
  }

  async auditLog(limit: number): Promise<AuditEntry[]> {
    const { rows } = await this.q<{ at: number; actor: string; action: string; detail: string }>(
      'SELECT at, actor, action, detail FROM audit_log ORDER BY seq DESC LIMIT $1',
      [limit],
    );
    return rows.map((r) => ({ ...r, detail: JSON.parse(r.detail) as Record<string, unknown> }));
  }

  async auditDenial(actor: string, command: string): Promise<void> {
    const now = Date.now();
    await this.q(
      `INSERT INTO audit_denials (hour, actor, command, count, last_at) VALUES ($1, $2, $3, 1, $4)
       ON CONFLICT (hour, actor, command) DO UPDATE SET count = audit_denials.count + 1, last_at = excluded.last_at`,
      [Math.floor(now / 3_600_000) * 3_600_000, actor, command, now],
    );
    if (++this.audits % 1000 === 0) await this.pruneAudit();
  }

  async auditDenials(limit: number): Promise<AuditDenial[]> {
    const { rows } = await this.q<AuditDenial>(
      'SELECT hour, actor, command, count, last_at AS "lastAt" FROM audit_denials ORDER BY last_at DESC LIMIT $1',
      [limit],
    );
    return rows;
  }

  /** Drops audit entries and denial counts older than the retention setting. */
  async pruneAudit(now = Date.now()): Promise<void> {
    const before = now - this.auditRetentionMs;
    await this.pool.query('DELETE FROM audit_log WHERE at < $1', [before]);
    await this.pool.query('DELETE FROM audit_denials WHERE last_at < $1', [before]);
  }

  async *ratedAnswers(options: RatedAnswersOptions = {}): AsyncIterable<RatedAnswer> {
    const counted =
      options.anonymousVotes === false ? `NOT (f.platform = 'web' AND f.user_id LIKE '${ANONYMOUS_WEB_USER_PREFIX}%')` : 'TRUE';
    // Pages of answers in a stable order (a large export never holds the whole table in memory).
    const page = 500;
    let after: { createdAt: number; seq: number } | undefined;
    for (;;) {
      const { rows } = await this.q<PgAnswerRow>(
        `SELECT a.* FROM answers a
         WHERE EXISTS (SELECT 1 FROM feedback f WHERE f.answer_id = a.id AND ${counted})
           AND ($1::bigint IS NULL OR (a.created_at, a.seq) > ($1::bigint, $2::bigint))
         ORDER BY a.created_at, a.seq LIMIT ${page}`,
        [after?.createdAt ?? null, after?.seq ?? null],
      );
      if (rows.length === 0) return;
      const votes = await this.q<{ answer_id: string; value: Vote; comment: string | null }>(
        `SELECT f.answer_id, f.value, f.comment FROM feedback f WHERE f.answer_id = ANY($1) AND ${counted} ORDER BY f.seq`,
        [rows.map((r) => r.id)],
      );
      const byAnswer = new Map<string, { value: Vote; comment: string | null }[]>();
      for (const v of votes.rows) byAnswer.set(v.answer_id, [...(byAnswer.get(v.answer_id) ?? []), v]);
      for (const row of rows) {
        yield ratedAnswer(row, byAnswer.get(row.id) ?? []);
      }
      const last = rows.at(-1)!;
      after = { createdAt: last.created_at, seq: last.seq };
      if (rows.length < page) return;
    }
  }

  async createJob(job: { kind: string; params: Record<string, string>; requestedBy: string; runDir?: string; resumes?: number }): Promise<JobRecord> {
    const { rows } = await this.q<JobRow>(
      `INSERT INTO jobs (kind, params, status, requested_by, created_at, run_dir, resumes)
       VALUES ($1, $2, 'queued', $3, $4, $5, $6) RETURNING *`,
      [job.kind, JSON.stringify(job.params), job.requestedBy, Date.now(), job.runDir ?? null, job.resumes ?? null],
    );
    return toJob(rows[0]!);
  }

  async updateJob(id: number, patch: Partial<Omit<JobRecord, 'id' | 'kind' | 'createdAt'>>): Promise<JobRecord> {
    const columns: [string, unknown][] = [];
    if (patch.params !== undefined) columns.push(['params', JSON.stringify(patch.params)]);
    if (patch.status !== undefined) columns.push(['status', patch.status]);
    if (patch.requestedBy !== undefined) columns.push(['requested_by', patch.requestedBy]);
    if (patch.startedAt !== undefined) columns.push(['started_at', patch.startedAt]);
    if (patch.finishedAt !== undefined) columns.push(['finished_at', patch.finishedAt]);
    if (patch.progress !== undefined) columns.push(['progress', JSON.stringify(patch.progress)]);
    if (patch.result !== undefined) columns.push(['result', JSON.stringify(patch.result)]);
    if (patch.error !== undefined) columns.push(['error', patch.error]);
    if (patch.runDir !== undefined) columns.push(['run_dir', patch.runDir]);
    // A job that ends gives up its lease; lease_owner stays, naming the process that ran it.
    const ends = patch.status !== undefined && patch.status !== 'running' && patch.status !== 'queued';
    if (columns.length > 0) {
      const set = [...columns.map(([name], i) => `${name} = $${i + 2}`), ...(ends ? ['lease_until = NULL'] : [])];
      await this.q(`UPDATE jobs SET ${set.join(', ')} WHERE id = $1`, [id, ...columns.map(([, v]) => v)]);
    }
    const job = await this.getJob(id);
    if (!job) throw new Error(`no job ${id}`);
    return job;
  }

  async getJob(id: number): Promise<JobRecord | undefined> {
    const { rows } = await this.q<JobRow>('SELECT * FROM jobs WHERE id = $1', [id]);
    return rows[0] && toJob(rows[0]);
  }

  async listJobs(limit: number): Promise<JobRecord[]> {
    const { rows } = await this.q<JobRow>('SELECT * FROM jobs ORDER BY id DESC LIMIT $1', [limit]);
    return rows.map(toJob);
  }

  /**
   * At start-up: jobs left running by a dead process become `interrupted`. Shared by several
   * processes, only jobs running without a lease are (none that this store started): a job whose
   * lease ran out is taken over by takeOverExpiredJobs, which also queues its resumption, and a
   * job whose lease holds is another live process's.
   */
  async interruptRunningJobs(): Promise<number> {
    const { rowCount } = await this.q(`UPDATE jobs SET status = 'interrupted', finished_at = $1 WHERE status = 'running' AND lease_until IS NULL`, [
      Date.now(),
    ]);
    return rowCount ?? 0;
  }

  async claimNextJob(owner: string, leaseMs: number, kinds: string[]): Promise<JobRecord | undefined> {
    const now = Date.now();
    // SKIP LOCKED: two processes polling at once take different jobs (or one takes it, one none).
    const { rows } = await this.q<JobRow>(
      `UPDATE jobs SET status = 'running', started_at = $2, lease_owner = $1, lease_until = $3
       WHERE id = (SELECT id FROM jobs WHERE status = 'queued' AND kind = ANY($4) ORDER BY id FOR UPDATE SKIP LOCKED LIMIT 1)
       RETURNING *`,
      [owner, now, now + leaseMs, kinds],
    );
    return rows[0] && toJob(rows[0]);
  }

  async renewJobLease(id: number, owner: string, leaseMs: number): Promise<boolean> {
    const { rowCount } = await this.q(`UPDATE jobs SET lease_until = $3 WHERE id = $1 AND lease_owner = $2 AND status = 'running'`, [
      id,
      owner,
      Date.now() + leaseMs,
    ]);
    return rowCount === 1;
  }

  async takeOverExpiredJobs(): Promise<{ interrupted: JobRecord; resumed: JobRecord }[]> {
    return this.transaction(async (client) => {
      const now = Date.now();
      const { rows } = await client.query<JobRow>(
        `SELECT * FROM jobs WHERE status = 'running' AND lease_until IS NOT NULL AND lease_until < $1 ORDER BY id FOR UPDATE SKIP LOCKED`,
        [now],
      );
      const out: { interrupted: JobRecord; resumed: JobRecord }[] = [];
      for (const row of rows) {
        const dead = await client.query<JobRow>(
          `UPDATE jobs SET status = 'interrupted', finished_at = $2, error = 'its process stopped renewing the lease', lease_until = NULL
           WHERE id = $1 RETURNING *`,
          [row.id, now],
        );
        const resumed = await client.query<JobRow>(
          `INSERT INTO jobs (kind, params, status, requested_by, created_at, run_dir, resumes) VALUES ($1, $2, 'queued', $3, $4, $5, $6) RETURNING *`,
          // Still the admin who asked for it: the resumed job's promotion is audited under them.
          [row.kind, row.params, row.requested_by, now, row.run_dir, row.id],
        );
        out.push({ interrupted: toJob(dead.rows[0]!), resumed: toJob(resumed.rows[0]!) });
      }
      return out;
    });
  }

  /**
   * Runs `work` while holding the database-wide promotion lock: promotions and rollbacks through
   * any process happen one at a time (the registry file is read and written inside).
   */
  async withPromotionLock<T>(work: () => Promise<T>): Promise<T> {
    await this.ready;
    const client = await this.pool.connect();
    try {
      await client.query('SELECT pg_advisory_lock($1)', [PROMOTION_LOCK]);
      try {
        return await work();
      } finally {
        await client.query('SELECT pg_advisory_unlock($1)', [PROMOTION_LOCK]);
      }
    } finally {
      client.release();
    }
  }

  /**
   * Calls `onNotify` on every NOTIFY on `channel` (a connection of its own, outside the pool,
   * reconnected after a failure). Returns the function that stops listening.
   */
  async listen(channel: string, onNotify: (payload: string | undefined) => void, onError?: (err: Error) => void): Promise<() => Promise<void>> {
    await this.ready;
    if (!/^[a-z_][a-z0-9_]*$/.test(channel)) throw new Error(`not a channel name: ${channel}`);
    let client: pg.Client | undefined;
    let stopped = false;
    let retry: NodeJS.Timeout | undefined;
    const scheduleRetry = () => {
      if (stopped || retry) return;
      retry = setTimeout(() => {
        retry = undefined;
        connect().catch((err: unknown) => {
          onError?.(err as Error);
          scheduleRetry();
        });
      }, 1000);
      retry.unref();
    };
    const connect = async (): Promise<void> => {
      const next = new pg.Client({ connectionString: this.url, types: TYPES });
      next.on('notification', (message) => {
        if (message.channel === channel) onNotify(message.payload);
      });
      next.on('error', (err) => {
        onError?.(err);
        void next.end().catch(() => undefined);
        if (client === next) client = undefined;
        scheduleRetry();
      });
      try {
        await next.connect();
        await next.query(`LISTEN ${channel}`);
      } catch (err) {
        await next.end().catch(() => undefined);
        throw err;
      }
      if (stopped) await next.end();
      else client = next;
    };
    await connect();
    return async () => {
      stopped = true;
      if (retry) clearTimeout(retry);
      await client?.end().catch(() => undefined);
    };
  }

  /** A token bucket per key shared by every process on this database (see RateLimiter). */
  rateLimiter(perMinute: number, burst: number, now: () => number = () => Date.now()): RateLimit {
    const refillPerMs = perMinute / 60_000;
    return {
      take: async (key: string) => {
        const at = now();
        // One statement: refill by the time elapsed, take a token if there is one, and say so.
        const { rows } = await this.q<{ tokens: number; allowed: boolean }>(
          `INSERT INTO rate_buckets AS b (key, tokens, at, allowed) VALUES ($1, $2::float8 - 1, $3, $2::float8 >= 1)
           ON CONFLICT (key) DO UPDATE SET
             allowed = least($2::float8, b.tokens + greatest(0, $3 - b.at) * $4::float8) >= 1,
             tokens = least($2::float8, b.tokens + greatest(0, $3 - b.at) * $4::float8)
                      - CASE WHEN least($2::float8, b.tokens + greatest(0, $3 - b.at) * $4::float8) >= 1 THEN 1 ELSE 0 END,
             at = greatest(b.at, $3)
           RETURNING tokens, allowed`,
          [key, burst, at, refillPerMs],
        );
        if (++this.takes % 1000 === 0) {
          // Full buckets carry no information.
          await this.q('DELETE FROM rate_buckets WHERE at < $1', [at - (burst * 60_000) / perMinute]);
        }
        const row = rows[0]!;
        return row.allowed ? 0 : Math.ceil((1 - row.tokens) / refillPerMs / 1000);
      },
    };
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.ready.catch(() => undefined);
    await this.pool.end();
  }
}

/** The PostgreSQL store as a training job's worker thread opens it (its own small pool). */
export function pgStoreAt(url: string): StoreOpener {
  return { location: redactDatabaseUrl(url), open: () => new PgStore(url, { poolSize: 2 }) };
}
