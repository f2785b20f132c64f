import { describe, expect, it } from 'vitest';
import type { Source } from '../../src/core/index.ts';
import { commandText, reactionVote } from '../../src/adapters/slack/inbound.ts';
import { renderCompact, renderReply, withVoteTally } from '../../src/adapters/slack/message-blocks.ts';
import { escapeMrkdwn, splitForSlack, stripBotMention } from '../../src/adapters/slack/slack-text.ts';

type AnyBlock = { type: string; block_id?: string; text?: { text: string }; elements?: { text: string | { text: string } }[] };
const sections = (blocks: unknown[]) => (blocks as AnyBlock[]).filter((b) => b.type === 'section').map((b) => b.text!.text);
const model = { name: 'tiny-gpt', version: 'v3', kind: 'language-model' as const };

describe('Slack text', () => {
  it('escapes what Slack would turn into pings or links', () => {
    expect(escapeMrkdwn('<!channel> & <@U1> <https://x|y>')).toBe('&lt;!channel&gt; &amp; &lt;@U1&gt; &lt;https://x|y&gt;');
    const [msg] = renderReply({ phase: 'final', text: 'Hi <!here>', answerId: 'a1' });
    expect(sections(msg!.blocks)[0]).toBe('Hi &lt;!here&gt;');
  });

  it('strips the bot mention in both forms and undoes Slack escaping', () => {
    expect(stripBotMention('<@UBOT> what is 1 &lt; 2 &amp;&amp; 3 &gt; 2?', 'UBOT')).toBe('what is 1 < 2 && 3 > 2?');
    expect(stripBotMention('hey <@UBOT|teamllm>, help', 'UBOT')).toBe('hey , help');
    expect(stripBotMention('ask <@UOTHER>', 'UBOT')).toBe('ask <@UOTHER>');
  });

  it('splits on paragraph, line and word boundaries within the escaped limit, and keeps Chinese and emoji whole', () => {
    const text = `${'a'.repeat(60)}\n\n${'b'.repeat(30)} ${'c'.repeat(30)}`;
    expect(splitForSlack(text, 70)).toEqual(['a'.repeat(60), `${'b'.repeat(30)} ${'c'.repeat(30)}`]);
    const escaped = splitForSlack('&'.repeat(10), 12);
    expect(escaped.map((p) => escapeMrkdwn(p).length).every((n) => n <= 12)).toBe(true);
    expect(escaped.join('')).toBe('&'.repeat(10));
    const cjk = '年假'.repeat(2000) + '😀'.repeat(10);
    const pieces = splitForSlack(cjk, 3000);
    expect(pieces.join('')).toBe(cjk);
    for (const p of pieces) expect(Array.from(p).length).toBeLessThanOrEqual(3000);
    expect(pieces.every((p) => !/[\uD800-\uDBFF]$/.test(p))).toBe(true);
  });
});

describe('Block Kit rendering', () => {
  const sources: Source[] = Array.from({ length: 14 }, (_, i) => ({ source: `docs/${i}.md`, title: `Doc ${i}`, text: `passage ${i} `.repeat(40), score: 1 }));

  it('renders a final answer with sources, the model and vote buttons valued with the answer id', () => {
    const [msg, ...more] = renderReply({ phase: 'final', text: 'Answer.', sources, answerId: 'ans-1', model });
    expect(more).toHaveLength(0);
    const blocks = msg!.blocks as AnyBlock[];
    expect(blocks.map((b) => b.type)).toEqual(['section', 'section', 'context', 'actions']);
    expect(sections(blocks)[1]).toMatch(/^\*Sources\*\n\[1\] \*Doc 0\* — `docs\/0.md`/);
    expect(sections(blocks)[1]).toContain('…and 4 more');
    expect(sections(blocks)[1]!.length).toBeLessThanOrEqual(3000);
    expect(JSON.stringify(blocks[2])).toContain('Answered by tiny-gpt v3');
    expect(blocks[3]).toMatchObject({
      block_id: 'teamllm_votes',
      elements: [{ action_id: 'teamllm_vote_up', value: 'ans-1' }, { action_id: 'teamllm_vote_down', value: 'ans-1' }, { action_id: 'teamllm_another_answer', value: 'ans-1' }],
    });
    const retrieval = renderReply({ phase: 'final', text: 'Quote.', answerId: 'a', model: { ...model, kind: 'retrieval-only' } });
    expect(JSON.stringify(retrieval[0]!.blocks)).toContain('no model trained yet');
  });

  it('keeps every message of a very long answer within 50 blocks, 3,000 characters per section and the message budget', () => {
    const text = Array.from({ length: 400 }, (_, i) => `Line ${i}: ${'x'.repeat(150)}`).join('\n');
    const messages = renderReply({ phase: 'final', text, sources, answerId: 'a', model });
    expect(messages.length).toBeGreaterThan(4);
    for (const m of messages) {
      expect(m.blocks.length).toBeLessThanOrEqual(50);
      expect(m.text.length).toBeLessThanOrEqual(500);
      for (const s of sections(m.blocks)) expect(s.length).toBeLessThanOrEqual(3000);
    }
    expect(messages.slice(0, -1).every((m) => !JSON.stringify(m.blocks).includes('teamllm_votes'))).toBe(true);
    expect(JSON.stringify(messages.at(-1)!.blocks)).toContain('teamllm_votes');
  });

  it('streams into a single message and marks the rest as still coming', () => {
    const messages = renderReply({ phase: 'streaming', text: 'y'.repeat(40_000) });
    expect(messages).toHaveLength(1);
    const texts = sections(messages[0]!.blocks);
    expect(texts.at(-1)).toBe('…');
    expect(JSON.stringify(messages[0]!.blocks)).toContain('writing…');
    expect(renderReply({ phase: 'thinking', text: 'Thinking…' })[0]!.text).toBe('Thinking…');
    expect(sections(renderReply({ phase: 'error', text: 'Oops' })[0]!.blocks)[0]).toBe(':warning: Oops');
  });

  it('shortens to one section, keeping the votes, for msg_too_long', () => {
    const compact = renderCompact({ phase: 'final', text: 'z'.repeat(10_000), answerId: 'a', model });
    const texts = sections(compact.blocks);
    expect(texts[0]!.length).toBeLessThanOrEqual(3000);
    expect(texts[0]).toMatch(/cut short/);
    expect(JSON.stringify(compact.blocks)).toContain('teamllm_votes');
  });

  it('shows the tally on the buttons after a vote and replaces an earlier thank-you', () => {
    const [msg] = renderReply({ phase: 'final', text: 'Answer.', answerId: 'ans-1', model });
    const once = withVoteTally(msg!.blocks, 'ans-1', { up: 1, down: 0 }, 'U1', 1);
    const twice = withVoteTally(once, 'ans-1', { up: 1, down: 2 }, 'U2', -1) as AnyBlock[];
    expect(twice.filter((b) => b.block_id === 'teamllm_feedback')).toHaveLength(1);
    const buttons = twice.find((b) => b.block_id === 'teamllm_votes')!.elements!.map((e) => (e.text as { text: string }).text);
    expect(buttons).toEqual(['👍 1', '👎 2', '↻ Another answer']);
    expect(JSON.stringify(twice)).toContain('Thanks <@U2>, your 👎 is recorded');
    expect(sections(twice)[0]).toBe('Answer.');
  });
});

describe('Slack inputs', () => {
  it('maps reactions to votes, skin tones included', () => {
    expect(reactionVote('+1')).toBe(1);
    expect(reactionVote('+1::skin-tone-5')).toBe(1);
    expect(reactionVote('thumbsdown')).toBe(-1);
    expect(reactionVote('-1::skin-tone-2')).toBe(-1);
    expect(reactionVote('heart')).toBeUndefined();
  });

  it('turns slash commands into the text commands', () => {
    expect(commandText('/train', 'sft lr=3e-4')).toBe('/train sft lr=3e-4');
    expect(commandText('/model', '')).toBe('/model');
    expect(commandText('/kb', 'search a &amp; b')).toBe('/kb search a & b');
  });
});
