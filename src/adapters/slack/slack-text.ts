/**
 * Text going to and coming from Slack. Outgoing text is escaped so that a model writing
 * `<!channel>` or `<@U123>` cannot ping anyone; incoming text has the bot's mention removed and
 * Slack's own escaping undone.
 */

export function escapeMrkdwn(text: string): string {
  return text.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
}

export function unescapeSlack(text: string): string {
  return text.replace(/&lt;/g, '<').replace(/&gt;/g, '>').replace(/&amp;/g, '&');
}

/** Removes `<@UBOT>` and `<@UBOT|name>` wherever they appear, then undoes Slack's escaping. */
export function stripBotMention(text: string, botUserId: string): string {
  const mention = new RegExp(`<@${botUserId}(?:\\|[^>]*)?>`, 'g');
  return unescapeSlack(text.replace(mention, ' ').replace(/[ \t]{2,}/g, ' ').trim());
}

export function mentionsUser(text: string, userId: string): boolean {
  return text.includes(`<@${userId}>`) || text.includes(`<@${userId}|`);
}

/** How long `text` becomes once escaped: Slack's limits count the escaped form. */
function escapedLength(ch: string): number {
  return ch === '&' ? 5 : ch === '<' || ch === '>' ? 4 : ch.length;
}

/**
 * Splits text into pieces whose escaped length is at most `limit`, preferring paragraph, line,
 * then word boundaries in the second half of a piece, and never splitting a surrogate pair.
 */
export function splitForSlack(text: string, limit: number): string[] {
  const pieces: string[] = [];
  const chars = Array.from(text);
  let start = 0;
  while (start < chars.length) {
    let used = 0;
    let end = start;
    while (end < chars.length && used + escapedLength(chars[end]!) <= limit) used += escapedLength(chars[end++]!);
    if (end < chars.length) end = bestBreak(chars, start, end);
    const piece = chars.slice(start, end).join('');
    if (piece.trim()) pieces.push(piece.replace(/\s+$/, ''));
    start = end;
    // The break character (newline or space) starts no piece.
    while (start < chars.length && /\s/.test(chars[start]!)) start++;
  }
  return pieces;
}

function bestBreak(chars: string[], start: number, end: number): number {
  const floor = start + Math.floor((end - start) / 2);
  for (const isBreak of [
    (i: number) => chars[i] === '\n' && chars[i - 1] === '\n',
    (i: number) => chars[i] === '\n',
    (i: number) => chars[i] === ' ',
  ]) {
    for (let i = end; i > floor; i--) if (isBreak(i)) return i;
  }
  return end;
}

/** Cuts text to `max` characters (code points), marking the cut. */
export function truncate(text: string, max: number): string {
  const chars = Array.from(text);
  return chars.length <= max ? text : `${chars.slice(0, max - 1).join('')}…`;
}
