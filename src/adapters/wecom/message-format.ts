import { createHash } from 'node:crypto';
import type { ModelInfo, ReplyContent, Vote } from '../../core/index.ts';
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
 */
export type CardAction = 'up' | 'down' | 'withdraw' | 'another';

export function buttonKey(action: CardAction, answerId: string): string {
  return `${action}:${answerId}`;
}

export function parseButtonKey(key: string | undefined): { action: CardAction; answerId: string } | undefined {
  const match = /^(up|down|withdraw|another):(.{1,512})$/s.exec(key ?? '');
  return match ? { action: match[1] as CardAction, answerId: match[2]! } : undefined;
}

export function actionValue(action: Exclude<CardAction, 'another'>): Vote | 0 {
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
export function feedbackCard(answerId: string, vote?: Vote): Record<string, unknown> {
  const upChosen = vote === 1;
  const downChosen = vote === -1;
  return {
    card_type: 'button_interaction',
    main_title: { title: 'Was this answer helpful?', desc: 'Your vote trains the next model' },
    ...(vote === undefined
      ? {}
      : { sub_title_text: `You rated this answer ${vote === 1 ? '👍' : '👎'} — thanks! Tap your choice again to withdraw it.` }),
    task_id: taskId(answerId),
    button_list: [
      { text: upChosen ? '👍 Yes ✓' : '👍 Yes', style: upChosen ? 1 : 2, key: buttonKey(upChosen ? 'withdraw' : 'up', answerId) },
      { text: downChosen ? '👎 No ✓' : '👎 No', style: downChosen ? 1 : 2, key: buttonKey(downChosen ? 'withdraw' : 'down', answerId) },
      { text: '↻ Another answer', style: 2, key: buttonKey('another', answerId) },
    ],
  };
}
