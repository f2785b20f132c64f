import { describe, expect, it } from 'vitest';
import { MemberSendQueue, type Outgoing } from '../../src/adapters/wecom/member-send-queue.ts';
import { silentLogger } from '../../src/core/index.ts';

/** A queue on a fake clock: sleeping advances time at once, so the test is exact and instant. */
function queueOnFakeClock(limits: { max: number; windowMs: number }[], failOn?: string) {
  let now = 0;
  const sent: { user: string; message: Outgoing; at: number }[] = [];
  const queue = new MemberSendQueue(
    async (user, message) => {
      if ('content' in message && message.content === failOn) throw new Error('errcode 60020');
      sent.push({ user, message, at: now });
    },
    { limits, logger: silentLogger, now: () => now, sleep: async (ms) => void (now += ms) },
  );
  return { queue, sent };
}

const text = (content: string, continues = false): Outgoing => ({ kind: 'text', content, ...(continues ? { continues } : {}) });
const contents = (sent: { message: Outgoing }[]) => sent.map((s) => ('content' in s.message ? s.message.content : 'CARD'));

describe('MemberSendQueue', () => {
  it('keeps each member within the window, in order, and merges the backlog into as few messages as fit', async () => {
    const { queue, sent } = queueOnFakeClock([{ max: 2, windowMs: 60_000 }]);
    const done = Promise.all([
      queue.enqueue('ann', [text('a1')]),
      queue.enqueue('ann', [text('a2')]),
      queue.enqueue('ann', [text('a3'), text('a3 continued', true)]),
      queue.enqueue('ann', [text('a4'), { kind: 'template_card', card: { task_id: 't' } }, text('a5')]),
      queue.enqueue('bob', [text('b1')]),
    ]);
    await done;
    const ann = sent.filter((s) => s.user === 'ann');
    expect(contents(ann)).toEqual(['a1', 'a2', 'a3a3 continued\n\na4', 'CARD', 'a5']);
    expect(ann.map((s) => s.at)).toEqual([0, 0, 60_000, 60_000, 120_000]);
    // Bob is not held up by Ann's backlog.
    expect(sent.find((s) => s.user === 'bob')!.at).toBe(0);
    expect(queue.pending).toBe(0);
  });

  it('applies every limit (per minute and per hour)', async () => {
    const { queue, sent } = queueOnFakeClock([
      { max: 30, windowMs: 60_000 },
      { max: 40, windowMs: 3_600_000 },
    ]);
    // Cards never merge, so each one costs a message.
    const cards: Outgoing[] = Array.from({ length: 41 }, (_, i) => ({ kind: 'template_card', card: { n: i } }));
    await queue.enqueue('ann', cards);
    const at = sent.map((s) => s.at);
    expect(at.slice(0, 30).every((t) => t === 0)).toBe(true);
    expect(at[30]).toBe(60_000);
    expect(at[39]).toBe(60_000);
    expect(at[40]).toBe(3_600_000);
  });

  it('reports a failed send to its caller and goes on with the rest', async () => {
    const { queue, sent } = queueOnFakeClock([{ max: 30, windowMs: 60_000 }], 'bad');
    await expect(queue.enqueue('ann', [text('ok 1'), text('bad'), text('ok 2')])).rejects.toThrow('60020');
    await queue.enqueue('ann', [text('ok 3')]);
    expect(contents(sent)).toEqual(['ok 1', 'ok 2', 'ok 3']);
  });

  it('never merges past the byte limit', async () => {
    const { queue, sent } = queueOnFakeClock([{ max: 1, windowMs: 1000 }]);
    const big = '字'.repeat(600); // 1800 bytes
    await Promise.all([queue.enqueue('ann', [text('first')]), queue.enqueue('ann', [text(big), text(big), text('tail')])]);
    expect(sent.map((s) => ('content' in s.message ? Buffer.byteLength(s.message.content) : 0))).toEqual([5, 1800, 1806]);
  });
});
