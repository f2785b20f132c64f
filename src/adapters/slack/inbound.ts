import type { Attachment, IncomingMessage } from '../../core/index.ts';
import { mentionsUser, stripBotMention, unescapeSlack } from './slack-text.ts';

/** The fields of a Slack `message` / `app_mention` event this adapter reads. */
export interface SlackMessageEvent {
  type: string;
  subtype?: string;
  channel: string;
  channel_type?: string;
  user?: string;
  bot_id?: string;
  text?: string;
  ts: string;
  thread_ts?: string;
  team?: string;
  files?: SlackFile[];
}

export interface SlackFile {
  id: string;
  name?: string;
  title?: string;
  mimetype?: string;
  size?: number;
  url_private_download?: string;
  url_private?: string;
}

/** Message subtypes that are a person saying something new; edits, deletions, joins... are not. */
const ANSWERABLE_SUBTYPES = new Set([undefined, 'file_share', 'thread_broadcast']);

export type Skip = { skip: string };

/**
 * Decides whether a message event is for the bot, and if so turns it into an IncomingMessage.
 * Channel messages that mention the bot are skipped here because Slack also sends them as
 * `app_mention` (a different event id): answering both would answer twice.
 */
export function fromMessageEvent(
  input: { eventId: string; team: string; event: SlackMessageEvent; botUserId: string; botToken: string },
): IncomingMessage | Skip {
  const { event, botUserId } = input;
  if (!ANSWERABLE_SUBTYPES.has(event.subtype)) return { skip: `subtype ${event.subtype}` };
  if (event.bot_id || !event.user) return { skip: 'bot message' };
  if (event.user === botUserId) return { skip: 'own message' };
  const isDirect = event.channel_type === 'im';
  const text = event.text ?? '';
  const mentioned = mentionsUser(text, botUserId);
  if (!isDirect) {
    if (mentioned) return { skip: 'mention (answered as app_mention)' };
    // Outside a thread, an unaddressed channel message is never for the bot.
    if (!event.thread_ts) return { skip: 'channel message without mention' };
  }
  return build(input, { isDirect, mentionsBot: mentioned, thread: event.thread_ts });
}

export function fromAppMention(
  input: { eventId: string; team: string; event: SlackMessageEvent; botUserId: string; botToken: string },
): IncomingMessage | Skip {
  const { event, botUserId } = input;
  if (event.bot_id || !event.user) return { skip: 'bot message' };
  if (event.user === botUserId) return { skip: 'own message' };
  // DMs arrive as message.im; an app_mention there would be the same message twice.
  if (event.channel.startsWith('D')) return { skip: 'mention in a DM' };
  if (event.subtype && !ANSWERABLE_SUBTYPES.has(event.subtype)) return { skip: `subtype ${event.subtype}` };
  // The bot answers a mention in its thread: a new thread rooted at the mention, or the thread it was in.
  return build(input, { isDirect: false, mentionsBot: true, thread: event.thread_ts ?? event.ts });
}

function build(
  input: { eventId: string; team: string; event: SlackMessageEvent; botUserId: string; botToken: string },
  shape: { isDirect: boolean; mentionsBot: boolean; thread: string | undefined },
): IncomingMessage {
  const { event } = input;
  return {
    platform: 'slack',
    eventId: input.eventId,
    workspace: input.team,
    channel: event.channel,
    ...(shape.thread ? { thread: shape.thread } : {}),
    messageId: event.ts,
    user: { id: event.user! },
    text: stripBotMention(event.text ?? '', input.botUserId),
    isDirect: shape.isDirect,
    mentionsBot: shape.mentionsBot,
    attachments: (event.files ?? []).map((f) => toAttachment(f, input.botToken)),
    receivedAt: Date.now(),
  };
}

/** Files shared with a message, downloadable with the bot token (scope files:read). */
function toAttachment(file: SlackFile, botToken: string): Attachment {
  const url = file.url_private_download ?? file.url_private;
  return {
    name: file.name ?? file.title ?? file.id,
    ...(file.mimetype ? { mimeType: file.mimetype } : {}),
    ...(file.size !== undefined ? { size: file.size } : {}),
    ...(url
      ? {
          url,
          fetch: async () => {
            const res = await fetch(url, { headers: { authorization: `Bearer ${botToken}` }, redirect: 'follow' });
            if (!res.ok) throw new Error(`downloading ${file.name ?? file.id} from Slack failed: HTTP ${res.status}`);
            return new Uint8Array(await res.arrayBuffer());
          },
        }
      : {}),
  };
}

/** A slash command's text as the bot's text command: `/train` + `sft lr=1` -> `/train sft lr=1`. */
export function commandText(command: string, text: string): string {
  return `/${command.replace(/^\//, '')} ${unescapeSlack(text)}`.trim();
}

/** 👍/👎 reactions (any skin tone) as votes; other reactions are not votes. */
export function reactionVote(reaction: string): 1 | -1 | undefined {
  const base = reaction.split('::')[0];
  if (base === '+1' || base === 'thumbsup') return 1;
  if (base === '-1' || base === 'thumbsdown') return -1;
  return undefined;
}
