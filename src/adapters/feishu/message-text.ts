/**
 * Turns the `content` of an im.message.receive_v1 event into the question text.
 *
 * Feishu writes every @-mention as a placeholder key (`@_user_1`) and lists the keys in
 * `mentions`: in text messages the key is inline, in rich-text (post) messages it is the
 * `user_id` of an `at` element. The bot's own mention is removed; other people's become
 * `@Name`. (The SDK's `normalize` looks `at` elements up by open_id, so it leaves the bot's
 * name in post messages; hence this small parser.)
 */

export interface Mention {
  key: string;
  id?: { open_id?: string | undefined } | undefined;
  name?: string | undefined;
}

export interface MessageText {
  text: string;
  mentionsBot: boolean;
}

export const SUPPORTED_MESSAGE_TYPES = ['text', 'post'] as const;

interface PostElement {
  tag?: string;
  text?: string;
  href?: string;
  user_id?: string;
  user_name?: string;
  language?: string;
}

interface PostBody {
  title?: string;
  content?: PostElement[][];
}

const PLACEHOLDER = /@_user_\d+|@_all\b/g;

/** Returns undefined for message types the bot does not read (images, files, stickers...). */
export function messageText(
  messageType: string,
  content: string,
  mentions: Mention[] = [],
  botOpenId?: string,
): MessageText | undefined {
  let parsed: unknown;
  try {
    parsed = JSON.parse(content);
  } catch {
    return undefined;
  }
  let raw: string;
  if (messageType === 'text') {
    const text = (parsed as { text?: unknown } | null)?.text;
    if (typeof text !== 'string') return undefined;
    raw = text;
  } else if (messageType === 'post') {
    const body = postBody(parsed);
    if (!body) return undefined;
    raw = postText(body);
  } else {
    return undefined;
  }

  const byKey = new Map(mentions.map((m) => [m.key, m]));
  const isBot = (m: Mention | undefined) => botOpenId !== undefined && m?.id?.open_id === botOpenId;
  const text = raw
    .replace(PLACEHOLDER, (key) => {
      if (key === '@_all') return '@all';
      const mention = byKey.get(key);
      if (isBot(mention)) return ' ';
      return mention?.name ? `@${mention.name}` : key;
    })
    .replace(/[ \t]{2,}/g, ' ')
    .split('\n')
    .map((line) => line.trim())
    .join('\n')
    .trim();
  return { text, mentionsBot: mentions.some((m) => isBot(m)) };
}

/** Received posts carry `{title, content}`; posts echoed from the send API wrap it in a locale. */
function postBody(parsed: unknown): PostBody | undefined {
  if (!parsed || typeof parsed !== 'object') return undefined;
  const candidate = parsed as PostBody & Record<string, unknown>;
  if (Array.isArray(candidate.content)) return candidate;
  for (const locale of ['zh_cn', 'en_us', 'ja_jp', ...Object.keys(candidate)]) {
    const inner = candidate[locale] as PostBody | undefined;
    if (inner && typeof inner === 'object' && Array.isArray(inner.content)) return inner;
  }
  return undefined;
}

function postText(body: PostBody): string {
  const lines: string[] = [];
  if (body.title) lines.push(body.title);
  for (const paragraph of body.content ?? []) {
    if (!Array.isArray(paragraph)) continue;
    lines.push(paragraph.map(elementText).join(''));
  }
  return lines.join('\n');
}

function elementText(el: PostElement): string {
  switch (el.tag) {
    case 'text':
    case 'md':
      return el.text ?? '';
    case 'a':
      return el.text && el.href && el.text !== el.href ? `${el.text} (${el.href})` : (el.text ?? el.href ?? '');
    case 'at': {
      const id = el.user_id ?? '';
      if (id === 'all' || id === '@_all') return '@all';
      // Placeholder keys are resolved against `mentions` afterwards, like in text messages.
      if (id.startsWith('@_')) return ` ${id} `;
      return el.user_name ? `@${el.user_name}` : '';
    }
    case 'code_block':
      return `\n${el.text ?? ''}\n`;
    default:
      // Images, media, emotions, rules: nothing to read.
      return '';
  }
}
