/**
 * What admins type in chat: the CLI's `--key value` spelling and `key=value` mean the same, and an
 * option a command does not take is refused by name — never ignored (an ignored `--algo kto` once
 * ran PPO instead).
 */
import { describe, expect, it } from 'vitest';
import { BUILTIN_COMMANDS, parseCommand, type CommandContext, type CommandServices } from '../../src/core/commands.ts';
import type { Actor, ModelService, TrainingService } from '../../src/core/index.ts';
import { formatMetrics } from '../../src/training/jobs/job-format.ts';

describe('parseCommand', () => {
  it('reads key=value, --key value and --key=value alike, in the stages\' camelCase', () => {
    const a = parseCommand('/train rlhf algo=kto steps=20');
    const b = parseCommand('/train rlhf --algo kto --steps 20');
    const c = parseCommand('/train rlhf --algo=kto --steps=20');
    for (const p of [a, b, c]) expect(p).toMatchObject({ name: 'train', sub: 'rlhf', params: { algo: 'kto', steps: '20' }, args: [] });
    expect(parseCommand('/train pretrain --max-iters 100 --dry-run')!.params).toEqual({ maxIters: '100', dryRun: 'true' });
    expect(parseCommand('/train rlhf --algo kto notes')).toMatchObject({ params: { algo: 'kto' }, args: ['notes'] });
    // An option first is not a subcommand.
    expect(parseCommand('/train --algo kto')).toMatchObject({ params: { algo: 'kto' } });
    expect(parseCommand('/train --algo kto')!.sub).toBeUndefined();
  });

  it('keeps the untouched rest for free text (a question, links with query strings)', () => {
    expect(parseCommand('/kb search how many days = leave?')!.rest).toBe('how many days = leave?');
    expect(parseCommand('/kb add https://x.test/a?b=c')!.rest).toBe('https://x.test/a?b=c');
  });
});

function harness() {
  const started: { kind: string; params: Record<string, string> }[] = [];
  const promoted: string[] = [];
  const training = {
    start: async (kind: string, params: Record<string, string>) => (started.push({ kind, params }), `Started ${kind}`),
    status: async () => 'status',
    stop: async () => 'stopped',
    resume: async () => 'resumed',
  } as unknown as TrainingService;
  const models = {
    list: async () => 'v1',
    promote: async (v: string) => (promoted.push(v), `promoted ${v}`),
    rollback: async () => 'rolled back',
  } as unknown as ModelService;
  const kb = { list: async () => [] } as unknown as NonNullable<CommandServices['kb']>;
  const services: CommandServices = { training, models, kb, serving: () => ({ name: 'm', version: 'v1', kind: 'language-model' }), resetConversation: async () => {} };
  const actor: Actor = { id: 'slack:U1', isAdmin: true };
  const run = (text: string) => {
    const command = parseCommand(text)!;
    const spec = BUILTIN_COMMANDS.find((c) => c.name === command.name)!;
    return spec.run({ command, services, actor, msg: { attachments: [] }, target: {} } as unknown as CommandContext);
  };
  return { run, started, promoted };
}

describe('chat commands', () => {
  it('/train rlhf --algo kto starts KTO, exactly as algo=kto does', async () => {
    const h = harness();
    await h.run('/train rlhf --algo kto');
    await h.run('/train rlhf algo=kto');
    expect(h.started).toEqual([
      { kind: 'rlhf', params: { algo: 'kto' } },
      { kind: 'rlhf', params: { algo: 'kto' } },
    ]);
  });

  it('refuses words and options a command does not take, by name, and changes nothing', async () => {
    const h = harness();
    expect(await h.run('/train rlhf kto')).toMatch(/"kto" is neither/);
    expect(await h.run('/train status --verbose')).toMatch(/\/train status does not take option "verbose"/);
    expect(await h.run('/train stop now')).toMatch(/does not take "now"/);
    expect(await h.run('/model promote v2 --force')).toMatch(/\/model promote <version> does not take option "force"/);
    expect(await h.run('/model rollback v1')).toMatch(/\/model rollback does not take "v1"/);
    expect(await h.run('/model list --all')).toMatch(/option "all"/);
    expect(await h.run('/kb list everything')).toMatch(/\/kb list does not take "everything"/);
    expect(h.started).toEqual([]);
    expect(h.promoted).toEqual([]);
    // What they do take still works.
    expect(await h.run('/model promote v2')).toBe('promoted v2');
    expect(await h.run('/kb list')).toBe('The knowledge base is empty.');
  });
});

describe('formatMetrics', () => {
  it('reads a metric that could not be measured (NaN, or null once stored as JSON) as n/a', () => {
    // A reward model trained on votes without a single pair has no pair accuracy.
    const stored = JSON.parse(JSON.stringify({ pairAccuracy: Number.NaN, voteAuc: 0.71234, heldOutPairs: 0 })) as Record<string, unknown>;
    expect(stored.pairAccuracy).toBeNull();
    expect(formatMetrics(stored)).toBe('pairAccuracy n/a, voteAuc 0.712, heldOutPairs 0');
    expect(formatMetrics({ loss: Number.NaN })).toBe('loss n/a');
    expect(formatMetrics(undefined)).toBe('');
  });
});
