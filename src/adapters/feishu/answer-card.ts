import type { ReplyContent, Source, Vote } from '../../core/index.ts';

/**
 * Renders the bot's replies as Feishu interactive cards (JSON 1.0 structure: older clients render
 * it, and Feishu ignores rather than rejects attributes it does not know).
 *
 * Every card is shared (`update_multi`), which is what lets the bot PATCH it while streaming and
 * lets a vote's callback answer carry the refreshed card to everyone in the chat.
 */

/** Feishu refuses cards over 30 KB. */
export const MAX_CARD_BYTES = 30 * 1024;
/** What we aim for, leaving room for Feishu's own accounting of the JSON. */
const TARGET_CARD_BYTES = MAX_CARD_BYTES - 1024;
const EXCERPT_CHARS = 160;
const MAX_SOURCES = 5;

export const VOTE_ACTION = 'teamllm_vote';

/** The value a 👍/👎 button sends back in card.action.trigger. */
export interface VoteButtonValue {
  action: typeof VOTE_ACTION;
  answerId: string;
  vote: Vote;
}

/** "↻ Another answer": the same question answered again, as a new reply (core Bot, `regenerate`). */
export const ANOTHER_ANSWER_ACTION = 'teamllm_another_answer';

/** "Is the answer in one of these sections?": a button per section named after a "don't know" (core Bot, `fromSection`). */
export const FROM_SECTION_ACTION = 'teamllm_from_section';
const MAX_SECTIONS_SHOWN = 4;

/** The value a section button sends back in card.action.trigger. */
export interface FromSectionButtonValue {
  action: typeof FROM_SECTION_ACTION;
  answerId: string;
  source: string;
  title: string;
}

/** The value the "↻ Another answer" button sends back in card.action.trigger. */
export interface AnotherAnswerButtonValue {
  action: typeof ANOTHER_ANSWER_ACTION;
  answerId: string;
}

/** The callback answer Feishu shows: a toast for the clicker and, when we have it, the refreshed card. */
export interface CardActionReply {
  toast: { type: 'success' | 'info' | 'warning' | 'error'; content: string };
  card?: { type: 'raw'; data: object };
}

export interface VoteTally {
  up: number;
  down: number;
}

export function answerCard(content: ReplyContent, tally?: VoteTally): object {
  const sources = content.sources ?? [];
  const attempts: Layout[] = [
    { sources, excerptChars: EXCERPT_CHARS },
    { sources, excerptChars: 0 },
    { sources: sources.slice(0, MAX_SOURCES), excerptChars: 0 },
  ];
  for (const layout of attempts) {
    const card = render(content, content.text, layout, tally);
    if (cardBytes(card) <= TARGET_CARD_BYTES) return card;
  }
  // Still too big: the answer itself is. Keep the longest prefix that fits (by code points, so
  // a Chinese character or an emoji is never cut in half).
  const layout = attempts[2]!;
  const chars = Array.from(content.text);
  const shortened = (n: number) => `${chars.slice(0, n).join('')}…\n\n*(shortened to fit in a Feishu card)*`;
  let lo = 0;
  let hi = chars.length;
  while (lo < hi) {
    const mid = Math.ceil((lo + hi) / 2);
    if (cardBytes(render(content, shortened(mid), layout, tally)) <= TARGET_CARD_BYTES) lo = mid;
    else hi = mid - 1;
  }
  return render(content, shortened(lo), layout, tally);
}

export function cardBytes(card: object): number {
  return Buffer.byteLength(JSON.stringify(card), 'utf8');
}

interface Layout {
  sources: Source[];
  excerptChars: number;
}

const TEMPLATE: Record<ReplyContent['phase'], string> = {
  thinking: 'wathet',
  streaming: 'wathet',
  final: 'blue',
  notice: 'grey',
  error: 'red',
};

function render(content: ReplyContent, text: string, layout: Layout, tally: VoteTally | undefined): object {
  const elements: object[] = [];
  const body = content.phase === 'streaming' ? `${text} ▍` : text;
  elements.push({ tag: 'markdown', content: body.trim() ? body : '…' });

  if (content.phase === 'final' && layout.sources.length > 0) {
    elements.push({ tag: 'hr' });
    elements.push({ tag: 'markdown', content: sourcesMarkdown(layout.sources, layout.excerptChars) });
  }
  if (content.phase === 'final' && content.answerId) {
    elements.push({
      tag: 'action',
      layout: 'trisection',
      actions: [
        voteButton(content.answerId, 1, '👍 Helpful', content.vote, tally?.up),
        voteButton(content.answerId, -1, '👎 Not helpful', content.vote, tally?.down),
        anotherAnswerButton(content.answerId),
      ],
    });
  }
  // After the votes, so a card's first action row stays 👍 / 👎 / ↻ on every answer.
  if (content.phase === 'final' && content.answerId && content.near?.length) {
    const answerId = content.answerId;
    elements.push({ tag: 'markdown', content: 'Is the answer in one of these sections?' });
    elements.push({
      tag: 'action',
      actions: content.near.slice(0, MAX_SECTIONS_SHOWN).map((s) => {
        const value: FromSectionButtonValue = { action: FROM_SECTION_ACTION, answerId, source: s.source, title: s.title };
        return { tag: 'button', text: { tag: 'plain_text', content: oneLine(s.title.split(' > ').pop() || s.source) }, type: 'default', value };
      }),
    });
  }
  const note = modelNote(content);
  if (note) elements.push({ tag: 'note', elements: [{ tag: 'plain_text', content: note }] });

  return {
    config: { wide_screen_mode: true, update_multi: true },
    ...(content.phase === 'notice'
      ? {}
      : { header: { template: TEMPLATE[content.phase], title: { tag: 'plain_text', content: title(content) } } }),
    elements,
  };
}

function title(content: ReplyContent): string {
  return content.phase === 'error' ? 'Something went wrong' : 'Answer';
}

function voteButton(answerId: string, vote: Vote, label: string, chosen: Vote | undefined, count: number | undefined): object {
  const value: VoteButtonValue = { action: VOTE_ACTION, answerId, vote };
  return {
    tag: 'button',
    text: { tag: 'plain_text', content: count ? `${label} · ${count}` : label },
    type: chosen === vote ? 'primary' : 'default',
    value,
  };
}

function anotherAnswerButton(answerId: string): object {
  const value: AnotherAnswerButtonValue = { action: ANOTHER_ANSWER_ACTION, answerId };
  return { tag: 'button', text: { tag: 'plain_text', content: '↻ Another answer' }, type: 'default', value };
}

function sourcesMarkdown(sources: Source[], excerptChars: number): string {
  const lines = ['**Sources**'];
  sources.forEach((s, i) => {
    lines.push(`${i + 1}. **${oneLine(s.title) || s.source}** · ${oneLine(s.source)}`);
    if (excerptChars > 0 && s.text.trim()) lines.push(`<font color='grey'>${excerpt(s.text, excerptChars)}</font>`);
  });
  return lines.join('\n');
}

function modelNote(content: ReplyContent): string | undefined {
  if (content.phase !== 'final' || !content.model) return undefined;
  return content.model.kind === 'retrieval-only'
    ? 'Quoted from the knowledge base (no model trained yet)'
    : `Answered by ${content.model.name} ${content.model.version}`;
}

function oneLine(text: string): string {
  return text.replace(/\s+/g, ' ').trim();
}

function excerpt(text: string, max: number): string {
  // Excerpts are shown inside a <font> tag: markup in them must not close it.
  const chars = Array.from(oneLine(text).replace(/<[^>]*>/g, '').replace(/[<>]/g, ' '));
  return chars.length <= max ? chars.join('') : `${chars.slice(0, max).join('')}…`;
}
