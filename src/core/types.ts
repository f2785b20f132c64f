/**
 * The platform-agnostic vocabulary of the bot. Every adapter turns its platform's events into
 * an IncomingMessage and gives the Bot a ReplyTarget; nothing in here knows about Slack,
 * Feishu, WeCom or HTTP.
 */

export type Platform = 'slack' | 'feishu' | 'wecom' | 'web' | 'console';

export interface Attachment {
  name: string;
  mimeType?: string;
  size?: number;
  url?: string;
  /** Downloads the file through the platform's authenticated API. */
  fetch?: () => Promise<Uint8Array>;
}

export interface IncomingMessage {
  platform: Platform;
  /** The platform's delivery id; redeliveries carry the same one, so it keys deduplication. */
  eventId: string;
  /** Slack team, Feishu tenant, WeCom corp; '' where the platform has none. */
  workspace: string;
  channel: string;
  /** Thread root, when the message was posted in a thread. */
  thread?: string;
  messageId: string;
  user: { id: string; name?: string };
  /** Text with the bot's own mention removed. */
  text: string;
  isDirect: boolean;
  mentionsBot: boolean;
  attachments: Attachment[];
  receivedAt?: number;
  /**
   * Whom the rate limit counts this message against, when not `platform:user.id`: anonymous web
   * sessions cost nothing to make, so they share their client address's bucket.
   */
  rateLimitKey?: string;
  /**
   * "Another answer" for this answer id (a button under an answer): the bot answers the same
   * question again, in the same conversation, avoiding the answers it already gave there. Only
   * from the channel the answer was given in; `text` is then ignored.
   */
  regenerate?: string;
  /**
   * "Answer from this section": the question of answer `answer` answered again from the section
   * the asker pointed at (one the bot named under that answer). Same rules as `regenerate`; a
   * 👍 on the result teaches retrieval the asker's words for that section (/train embeddings).
   */
  fromSection?: { answer: string; source: string; title: string };
}

export interface UserRef {
  platform: Platform;
  id: string;
  name?: string;
}

/** A passage the answer relies on, as shown to users and exported in datasets. */
export interface Source {
  source: string;
  title: string;
  text: string;
  score: number;
}

export type ReplyPhase = 'thinking' | 'streaming' | 'final' | 'notice' | 'error';

export interface ReplyContent {
  phase: ReplyPhase;
  text: string;
  sources?: Source[];
  /** Set on final answers whose answerer names it: the direct answer alone ('' when the bot does not know). */
  direct?: string;
  /** Set on "don't know" answers: the sections found closest, which the asker may point at (`fromSection`). */
  near?: Source[];
  /** Set on final answers: the record that 👍/👎 controls refer to. */
  answerId?: string;
  /** Which model produced it (shown small under answers). */
  model?: ModelInfo;
  /** The vote the reply currently shows, after a user rated it. */
  vote?: Vote;
}

export interface PostedReply {
  /** Platform id of the posted message (Slack ts, Feishu message_id...). */
  readonly id: string;
  update(content: ReplyContent): Promise<void>;
}

/** Where the Bot writes its reply; each adapter implements it with its platform's API. */
export interface ReplyTarget {
  post(content: ReplyContent): Promise<PostedReply>;
  /** Minimum milliseconds between streaming updates (platform rate limits). */
  readonly streamIntervalMs?: number;
  /**
   * False where a sent message cannot be edited (WeCom self-built apps): the Bot then sends no
   * streaming updates, only the placeholder and the final reply, which the target may drop or send.
   */
  readonly updatable?: boolean;
  /**
   * Present where the platform takes files: posts an image in the same conversation/thread (a
   * finished training job's loss curves). Core never asks which platform it is: targets without
   * it get a link to the admin web page instead.
   */
  uploadImage?(image: ReplyImage): Promise<void>;
}

/** An image to post beside a reply (PNG bytes). */
export interface ReplyImage {
  data: Uint8Array;
  filename: string;
  title: string;
  /** Text for screen readers and clients that do not show images. */
  altText: string;
}

export type Vote = 1 | -1;

export interface ConversationTurn {
  role: 'user' | 'assistant';
  text: string;
  at: number;
}

export interface ModelInfo {
  name: string;
  version: string;
  /** 'retrieval-only' answers quote documents; they are never presented as a model's words. */
  kind: 'retrieval-only' | 'language-model';
}
