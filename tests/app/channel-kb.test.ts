import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../../src/app/config.ts';
import { createRuntime, type Runtime } from '../../src/app/runtime.ts';
import { silentLogger } from '../../src/core/index.ts';
import { message, RecordingTarget } from '../helpers.ts';

let runtime: Runtime | undefined;
afterAll(async () => runtime?.close());

describe('a channel bound to its own knowledge base', () => {
  it('answers from that knowledge base only; other channels use the default one', async () => {
    const home = mkdtempSync(join(tmpdir(), 'teamllm-channel-kb-'));
    writeFileSync(join(home, 'bonus.md'), '# Sales bonus\n\nThe sales bonus is paid every quarter at 7 percent of closed revenue.');
    const config = loadConfig({ env: { TEAMLLM_HOME: home, TEAMLLM_CHANNEL_KB: 'slack:CSALES=sales' }, cwd: home });
    expect(config.channelKnowledgeBases).toEqual({ 'slack:CSALES': 'sales' });
    runtime = await createRuntime(config, { logger: silentLogger, defaultMetrics: false });
    await (await runtime.knowledge.get('sales')).addPaths([join(home, 'bonus.md')]);

    const sales = new RecordingTarget();
    await runtime.bot.handle(message({ channel: 'CSALES', text: 'How often is the sales bonus paid?' }), sales);
    expect(sales.last!.sources?.map((s) => s.source)).toEqual(['bonus.md']);

    const elsewhere = new RecordingTarget();
    await runtime.bot.handle(message({ channel: 'D9', text: 'How often is the sales bonus paid?' }), elsewhere);
    expect((elsewhere.last!.sources ?? []).some((s) => s.source === 'bonus.md')).toBe(false);

    expect(() => loadConfig({ env: { TEAMLLM_CHANNEL_KB: 'CSALES=sales' }, cwd: home })).toThrow(/not platform:channel=knowledgeBase/);
  });
});
