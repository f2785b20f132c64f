import type { types } from '@slack/bolt';
import type { ReplyContent, Source } from '../../core/index.ts';
import { escapeMrkdwn, splitForSlack, truncate } from './slack-text.ts';

type KnownBlock = types.KnownBlock;

/** Slack's documented limits for a section's text and the blocks of one message. */
export const SECTION_TEXT_LIMIT = 3000;
export const MAX_BLOCKS = 50;
/**
 * Slack refuses block messages (`msg_blocks_too_long`) far below its documented 40,000
 * characters — around 13,000 in practice — so longer answers continue in further messages.
 */
export const MESSAGE_TEXT_BUDGET = 12_000;
/** The notification text shown beside the blocks (push notifications, screen readers' summary). */
const FALLBACK_TEXT_CHARS = 500;
const MAX_SOURCES_SHOWN = 10;

export const VOTE_BLOCK_ID = 'teamllm_votes';
export const VOTE_UP_ACTION = 'teamllm_vote_up';
export const VOTE_DOWN_ACTION = 'teamllm_vote_down';
/** "↻ Another answer": the same question answered again in the thread (core Bot, `regenerate`). */
export const ANOTHER_ANSWER_ACTION = 'teamllm_another_answer';
const FEEDBACK_BLOCK_ID = 'teamllm_feedback';
/** "Is the answer in one of these?": a button per section named after a "don't know" (core Bot, `fromSection`). */
export const SECTIONS_BLOCK_ID = 'teamllm_sections';
const FROM_SECTION_ACTION = 'teamllm_from_section';
/** Slack's limits: a button's text 75 characters, its value 2,000; a few sections are enough to choose from. */
const BUTTON_TEXT_LIMIT = 75;
const BUTTON_VALUE_LIMIT = 2000;
const MAX_SECTIONS_SHOWN = 4;

/** What a section button carries: the answer it was named under and the section (document, heading path). */
export interface SectionChoice {
  answer: string;
  source: string;
  title: string;
}

export interface SlackMessage {
  text: string;
  blocks: KnownBlock[];
}

const section = (mrkdwn: string): KnownBlock => ({ type: 'section', text: { type: 'mrkdwn', text: mrkdwn } });
const context = (mrkdwn: string, blockId?: string): KnownBlock => ({
  type: 'context',
  ...(blockId ? { block_id: blockId } : {}),
  elements: [{ type: 'mrkdwn', text: mrkdwn }],
});

/**
 * Renders a reply as one or more Slack messages. Streaming states fit in one message (the one
 * being updated); final answers, notices and errors continue in further messages when long, and
 * the last message carries the sources, the model line and the 👍/👎 buttons.
 */
export function renderReply(content: ReplyContent): SlackMessage[] {
  switch (content.phase) {
    case 'thinking':
      return [{ text: content.text || 'Thinking…', blocks: [context(`_${escapeMrkdwn(content.text || 'Thinking…')}_`)] }];
    case 'streaming': {
      const [first, ...more] = packSections(splitForSlack(content.text, SECTION_TEXT_LIMIT));
      const sections = first ?? [];
      const blocks = sections.map(section);
      if (more.length > 0) blocks.push(section('…'));
      blocks.push(context('✍️ _writing…_'));
      return [{ text: fallbackText(content.text), blocks }];
    }
    default: {
      const text = content.phase === 'error' ? `:warning: ${content.text}` : content.text;
      const pieces = splitForSlack(text, SECTION_TEXT_LIMIT);
      const footer = footerBlocks(content);
      const messages = packSections(pieces.length > 0 ? pieces : ['_(empty answer)_'], footer.length).map((sections) => ({
        text: fallbackText(sections.join('\n')),
        blocks: sections.map(section),
      }));
      messages.at(-1)!.blocks.push(...footer);
      return messages;
    }
  }
}

/**
 * The whole reply in one message, cut to one section: the fallback when Slack refuses the
 * full rendering (`msg_too_long`, `msg_blocks_too_long`).
 */
export function renderCompact(content: ReplyContent): SlackMessage {
  const note = '\n\n_(cut short: the full text was too long for Slack)_';
  const text = content.phase === 'error' ? `:warning: ${content.text}` : content.text;
  const [first] = splitForSlack(text, SECTION_TEXT_LIMIT - note.length);
  const blocks = [section((first === undefined ? '_(empty answer)_' : escapeMrkdwn(first)) + note)];
  if (content.phase !== 'streaming' && content.phase !== 'thinking') blocks.push(...footerBlocks(content));
  return { text: fallbackText(content.text), blocks };
}

/** Groups sections into messages that stay under the character budget and the block limit. */
function packSections(pieces: string[], reservedBlocks = 1): string[][] {
  const maxSections = MAX_BLOCKS - reservedBlocks - 1;
  const messages: string[][] = [];
  let current: string[] = [];
  let chars = 0;
  for (const piece of pieces) {
    const escaped = escapeMrkdwn(piece);
    if (current.length > 0 && (chars + escaped.length > MESSAGE_TEXT_BUDGET || current.length >= maxSections)) {
      messages.push(current);
      current = [];
      chars = 0;
    }
    current.push(escaped);
    chars += escaped.length;
  }
  if (current.length > 0) messages.push(current);
  return messages;
}

function footerBlocks(content: ReplyContent): KnownBlock[] {
  const blocks: KnownBlock[] = [];
  if (content.phase !== 'final') return blocks;
  if (content.sources && content.sources.length > 0) blocks.push(section(sourcesText(content.sources)));
  if (content.model) {
    blocks.push(
      context(
        content.model.kind === 'retrieval-only'
          ? 'Quoted from the knowledge base (no model trained yet)'
          : `Answered by ${escapeMrkdwn(content.model.name)} ${escapeMrkdwn(content.model.version)}`,
      ),
    );
  }
  if (content.answerId && content.near?.length) blocks.push(...sectionChoices(content.answerId, content.near));
  if (content.answerId) blocks.push(voteActions(content.answerId, 0, 0));
  return blocks;
}

/** The closest sections after a "don't know", one button each; the click answers from that section. */
function sectionChoices(answerId: string, near: Source[]): KnownBlock[] {
  const elements = near
    .slice(0, MAX_SECTIONS_SHOWN)
    .map((s, i) => ({ s, i, value: JSON.stringify({ answer: answerId, source: s.source, title: s.title } satisfies SectionChoice) }))
    // A heading path too long for a button's value is left out rather than cut (it must match exactly).
    .filter(({ value }) => value.length <= BUTTON_VALUE_LIMIT)
    .map(({ s, i, value }) => ({
      type: 'button' as const,
      action_id: `${FROM_SECTION_ACTION}_${i}`,
      text: { type: 'plain_text' as const, text: truncate(s.title.split(' > ').pop() || s.source, BUTTON_TEXT_LIMIT), emoji: true },
      value,
      accessibility_label: truncate(`Answer from ${s.title || s.source}`, BUTTON_TEXT_LIMIT),
    }));
  if (elements.length === 0) return [];
  return [context('Is the answer in one of these sections?'), { type: 'actions', block_id: SECTIONS_BLOCK_ID, elements }];
}

/** A section button's value back, or undefined when it is not one (a forged or damaged payload). */
export function parseSectionChoice(value: string | undefined): SectionChoice | undefined {
  try {
    const v = JSON.parse(value ?? '') as Partial<SectionChoice>;
    return typeof v.answer === 'string' && typeof v.source === 'string' && typeof v.title === 'string' ? { answer: v.answer, source: v.source, title: v.title } : undefined;
  } catch {
    return undefined;
  }
}

function sourcesText(sources: Source[]): string {
  const lines = sources.slice(0, MAX_SOURCES_SHOWN).map((s, i) => {
    const excerpt = truncate(s.text.replace(/\s+/g, ' ').trim(), 140);
    return `[${i + 1}] *${escapeMrkdwn(truncate(s.title, 120))}* — \`${escapeMrkdwn(truncate(s.source, 200))}\`\n> ${escapeMrkdwn(excerpt)}`;
  });
  const more = sources.length > MAX_SOURCES_SHOWN ? `\n…and ${sources.length - MAX_SOURCES_SHOWN} more` : '';
  let text = `*Sources*\n${lines.join('\n')}`;
  // Escaping can lengthen a line, so trim whole lines until the block fits.
  while (text.length + more.length > SECTION_TEXT_LIMIT && lines.length > 1) {
    lines.pop();
    text = `*Sources*\n${lines.join('\n')}`;
  }
  return truncate(text + more, SECTION_TEXT_LIMIT);
}

function voteActions(answerId: string, up: number, down: number): KnownBlock {
  const button = (actionId: string, emoji: string, count: number, label: string) => ({
    type: 'button' as const,
    action_id: actionId,
    text: { type: 'plain_text' as const, text: count > 0 ? `${emoji} ${count}` : emoji, emoji: true },
    value: answerId,
    accessibility_label: label,
  });
  return {
    type: 'actions',
    block_id: VOTE_BLOCK_ID,
    elements: [
      button(VOTE_UP_ACTION, '👍', up, 'This answer was helpful'),
      button(VOTE_DOWN_ACTION, '👎', down, 'This answer was not helpful'),
      { ...button(ANOTHER_ANSWER_ACTION, '↻ Another answer', 0, 'Answer the same question differently') },
    ],
  };
}

/**
 * The blocks of a posted answer after a vote: the buttons show the tally, and a line under them
 * thanks the voter. Works on the blocks Slack sends back in the block_actions payload.
 */
export function withVoteTally(blocks: KnownBlock[], answerId: string, tally: { up: number; down: number }, voterId: string, value: 1 | -1): KnownBlock[] {
  const kept = blocks.filter((b) => b.block_id !== FEEDBACK_BLOCK_ID);
  const thanks = context(`Thanks <@${voterId}>, your ${value === 1 ? '👍' : '👎'} is recorded — it helps train the next model.`, FEEDBACK_BLOCK_ID);
  const at = kept.findIndex((b) => b.block_id === VOTE_BLOCK_ID);
  if (at < 0) return [...kept, voteActions(answerId, tally.up, tally.down), thanks];
  return [...kept.slice(0, at), voteActions(answerId, tally.up, tally.down), thanks, ...kept.slice(at + 1)];
}

function fallbackText(text: string): string {
  return truncate(text.trim() || 'teamllm', FALLBACK_TEXT_CHARS);
}
