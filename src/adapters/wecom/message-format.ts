import { createHash } from 'node:crypto';
import type { ModelInfo, ReplyContent, SectionRef, Source, Vote } from '../../core/index.ts';
import type { Outgoing } from './member-send-queue.ts';
import { splitUtf8 } from './utf8-split.ts';

/** `markdown` renders in the WeCom app; the WeChat plug-in (微信插件) shows only `text`. */
export type WecomFormat = 'markdown' | 'text';

/** Splits a text into as many messages as WeCom's byte limit needs. */
export function textMessages(text: string, kind: WecomFormat = 'text', maxBytes?: number): Outgoing[] {
  const body = text.trim() ? text : '…';
  return splitUtf8(body, maxBytes).map((content, i) => ({ kind, content, ...(i > 0 ? { continues: true } : {}) }));
}

/** The answer with its cited sources, in the chosen format. */
export function formatAnswer(content: ReplyContent, format: WecomFormat): string {
  const text = content.text.trim() || 'I found nothing to answer that with.';
  const sources = content.sources ?? [];
  if (sources.length === 0) return text;
  if (format === 'markdown') {
    const lines = sources.map((s, i) => `> [${i + 1}] ${s.title} — ${s.source}`);
    return `${text}\n\n<font color="comment">Sources</font>\n${lines.join('\n')}`;
  }
  return `${text}\n\nSources:\n${sources.map((s, i) => `[${i + 1}] ${s.title} — ${s.source}`).join('\n')}`;
}

export function modelLine(model: ModelInfo | undefined): string {
  if (!model) return '';
  return model.kind === 'retrieval-only' ? 'Quoted from the knowledge base' : `Answered by ${model.name} ${model.version}`;
}

/**
 * What a card button does; the key carries it with the answer id, so a click needs no lookup.
 * `another`: "↻ Another answer", the same question answered again (core Bot, `regenerate`).
 * `section`: "Is the answer in one of these sections?" after a "don't know": the question answered
 * from that section (core Bot, `fromSection`); its key carries the section too.
 */
export type CardAction = 'up' | 'down' | 'withdraw' | 'another' | 'section';

/** WeCom's limit on a button key; a section whose key would not fit gets no button. */
const KEY_LIMIT = 1024;
/** A button's text: WeCom shows about ten characters. */
const BUTTON_TEXT_CHARS = 12;
/** The card holds six buttons at most: three for the votes and "another answer", three sections. */
const MAX_SECTIONS_SHOWN = 3;

export function buttonKey(action: Exclude<CardAction, 'section'>, answerId: string): string {
  return `${action}:${answerId}`;
}

export function sectionKey(answerId: string, section: SectionRef): string {
  return `section:${Buffer.from(JSON.stringify({ a: answerId, s: section.source, t: section.title })).toString('base64url')}`;
}

export type ButtonKey = { action: Exclude<CardAction, 'section'>; answerId: string } | { action: 'section'; answerId: string; section: SectionRef };

export function parseButtonKey(key: string | undefined): ButtonKey | undefined {
  const section = /^section:([A-Za-z0-9_-]{1,1100})$/.exec(key ?? '');
  if (section) {
    try {
      const v = JSON.parse(Buffer.from(section[1]!, 'base64url').toString('utf8')) as { a?: unknown; s?: unknown; t?: unknown };
      return typeof v.a === 'string' && v.a && typeof v.s === 'string' && typeof v.t === 'string' ? { action: 'section', answerId: v.a, section: { source: v.s, title: v.t } } : undefined;
    } catch {
      return undefined;
    }
  }
  const match = /^(up|down|withdraw|another):(.{1,512})$/s.exec(key ?? '');
  return match ? { action: match[1] as Exclude<CardAction, 'section'>, answerId: match[2]! } : undefined;
}

export function actionValue(action: 'up' | 'down' | 'withdraw'): Vote | 0 {
  return action === 'up' ? 1 : action === 'down' ? -1 : 0;
}

/** task_id allows letters, digits and `_-@` up to 128 bytes, and must be unique in the app. */
function taskId(answerId: string): string {
  return /^[A-Za-z0-9_@-]{1,100}$/.test(answerId)
    ? `answer-${answerId}`
    : `answer-${createHash('sha256').update(answerId).digest('hex').slice(0, 64)}`;
}

/**
 * The 👍/👎 card under an answer (`button_interaction`), with "↻ Another answer" beside them. After
 * a vote the chosen button turns into "withdraw", so clicking it again takes the vote back.
 */
export function feedbackCard(answerId: string, vote?: Vote, near: Source[] = []): Record<string, unknown> {
  const sections = near
    .slice(0, MAX_SECTIONS_SHOWN)
    .map((s) => ({ text: short(s.title.split(' > ').pop() || s.source), style: 2, key: sectionKey(answerId, s) }))
    .filter((b) => Buffer.byteLength(b.key) <= KEY_LIMIT);
  const upChosen = vote === 1;
  const downChosen = vote === -1;
  return {
    card_type: 'button_interaction',
    main_title: sections.length
      ? { title: 'Is the answer in one of these sections?', desc: 'Tap one to be answered from it; your vote trains the next model' }
      : { title: 'Was this answer helpful?', desc: 'Your vote trains the next model' },
    ...(vote === undefined
      ? {}
      : { sub_title_text: `You rated this answer ${vote === 1 ? '👍' : '👎'} — thanks! Tap your choice again to withdraw it.` }),
    task_id: taskId(answerId),
    button_list: [
      { text: upChosen ? '👍 Yes ✓' : '👍 Yes', style: upChosen ? 1 : 2, key: buttonKey(upChosen ? 'withdraw' : 'up', answerId) },
      { text: downChosen ? '👎 No ✓' : '👎 No', style: downChosen ? 1 : 2, key: buttonKey(downChosen ? 'withdraw' : 'down', answerId) },
      { text: '↻ Another answer', style: 2, key: buttonKey('another', answerId) },
      ...sections,
    ],
  };
}

function short(text: string): string {
  const chars = Array.from(text.replace(/\s+/g, ' ').trim());
  return chars.length <= BUTTON_TEXT_CHARS ? chars.join('') : `${chars.slice(0, BUTTON_TEXT_CHARS - 1).join('')}…`;
}
