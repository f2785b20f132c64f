import { PassThrough } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { runConsoleChat } from '../../src/adapters/console/index.ts';
import { makeBot, waitFor } from '../helpers.ts';

describe('terminal chat', () => {
  it('streams an answer with its sources, records a rating with a comment, and runs commands', async () => {
    const { bot, store } = makeBot();
    const input = new PassThrough();
    const output = new PassThrough();
    let screen = '';
    output.on('data', (d: Buffer) => (screen += d.toString()));
    const done = runConsoleChat({ bot, input, output, user: 'alice' });

    input.write('+\n');
    await waitFor(() => screen.includes('no answer to rate yet'));
    input.write('How many days of leave?\n');
    await waitFor(() => screen.includes('Rate this answer'));
    expect(screen).toContain('You get 25 days of leave.');
    expect(screen).toContain('[1] Leave — en/leave.md');
    input.write('- missing the part-time rule\n');
    await waitFor(() => screen.includes('👎 recorded'));
    input.write('/help\n');
    await waitFor(() => screen.includes('/kb search'));
    input.write('/quit\n');
    await done;

    const rated = [];
    for await (const r of store.ratedAnswers()) rated.push(r);
    expect(rated).toHaveLength(1);
    expect(rated[0]).toMatchObject({ up: 0, down: 1, comments: ['missing the part-time rule'] });
    expect(rated[0]!.answer.platform).toBe('console');
  });
});
