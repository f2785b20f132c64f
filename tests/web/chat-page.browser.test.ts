import { existsSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium, type Browser } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../../src/app/config.ts';
import { createRuntime, startServer, type RunningServer, type Runtime } from '../../src/app/runtime.ts';
import { silentLogger } from '../../src/core/index.ts';

// Debian's chromium; .ci/run installs it. Without it this test fails rather than skipping.
const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';

let runtime: Runtime;
let server: RunningServer;
let browser: Browser;

beforeAll(async () => {
  if (!existsSync(CHROMIUM)) throw new Error(`headless Chromium not found at ${CHROMIUM}: apt-get install chromium (or set CHROMIUM_PATH)`);
  const home = mkdtempSync(join(tmpdir(), 'teamllm-browser-'));
  // One browser asks every test's questions from one address: the per-address limit is not tested here.
  runtime = await createRuntime(loadConfig({ env: { TEAMLLM_HOME: home, TEAMLLM_RATE_BURST: '100' }, cwd: home }), { logger: silentLogger, defaultMetrics: false });
  server = await startServer(runtime, 0, '127.0.0.1');
  browser = await chromium.launch({
    executablePath: CHROMIUM,
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
});

afterAll(async () => {
  await browser?.close();
  await server?.close();
  await runtime?.close();
});

describe('web chat in a real browser', () => {
  it('asks, watches the answer arrive with sources, and rates it', async () => {
    const page = await browser.newPage();
    await page.goto(server.url);
    await page.getByLabel('Question').fill('How many wellbeing days do employees get each year?');
    await page.keyboard.press('Enter');
    const answer = page.locator('.msg.bot').last();
    await answer.locator('.votes').waitFor({ timeout: 15_000 });
    await expect.poll(() => answer.locator('.text').textContent()).toContain('2 wellbeing days');
    expect(await answer.locator('.sources summary').first().textContent()).toMatch(/^\[1\] .+ — en\/leave-and-holidays\.md$/);
    expect(await answer.locator('.meta').textContent()).toContain('no model trained yet');

    await answer.getByTitle('Helpful', { exact: true }).click();
    await answer.getByText('Thanks for the feedback').waitFor();
    const rated = [];
    for await (const r of runtime.store.ratedAnswers()) rated.push(r);
    expect(rated).toHaveLength(1);
    expect(rated[0]).toMatchObject({ up: 1, down: 0 });
    expect(rated[0]!.answer.question).toBe('How many wellbeing days do employees get each year?');

    // Changing one's mind replaces the vote rather than adding one.
    await answer.getByTitle('Not helpful', { exact: true }).click();
    await expect.poll(async () => (await runtime.store.feedbackCounts()).down).toBe(1);
    expect(await runtime.store.feedbackCounts()).toEqual({ up: 0, down: 1 });

    // "Another answer": a second answer to the same question, under it, with its own buttons.
    const first = await answer.locator('.text').textContent();
    await answer.getByText('↻ Another answer').click();
    await expect.poll(() => page.locator('.msg.bot .votes').count(), { timeout: 15_000 }).toBe(2);
    expect(await page.locator('.msg.user').count()).toBe(1);
    const second = await page.locator('.msg.bot').last().locator('.text').textContent();
    expect(second).not.toBe(first);
    // (`answer` is the last bubble, now the new one; the first keeps its used button disabled.)
    expect(await page.locator('.msg.bot').first().getByText('↻ Another answer').isDisabled()).toBe(true);
    await page.screenshot({ path: join(tmpdir(), 'teamllm-web-chat.png') });
  });

  it('after a "don\'t know", answers from the section the asker points at', async () => {
    const page = await browser.newPage();
    await page.goto(server.url);
    await page.getByLabel('Question').fill("I'm quitting with 6 vacation days I can't use up. What happens to them?");
    await page.keyboard.press('Enter');
    // (The first bubble: `.last()` would follow the answer added below.)
    const refusal = page.locator('.msg.bot').first();
    await refusal.locator('.votes').waitFor({ timeout: 15_000 });
    expect(await refusal.locator('.text').textContent()).toMatch(/couldn't find/);
    const choice = refusal.locator('.sections button', { hasText: 'Remaining leave' });
    expect(await refusal.locator('.sections').textContent()).toContain('Is the answer in one of these?');
    await choice.click();
    await expect.poll(() => page.locator('.msg.bot .votes').count(), { timeout: 15_000 }).toBe(2);
    const answer = page.locator('.msg.bot').last();
    // Answered from that section alone, cited.
    expect(await answer.locator('.text').textContent()).toContain('remaining annual leave');
    expect(await answer.locator('.sources summary').first().textContent()).toMatch(/^\[1\] .*Remaining leave — en\/offboarding\.md$/);
    expect(await choice.isDisabled()).toBe(true);
  });

  it('keeps the conversation across questions and starts afresh on request', async () => {
    const page = await browser.newPage();
    await page.goto(server.url);
    for (const q of ['Where is the Rotterdam office?', 'And the Shanghai one?']) {
      await page.getByLabel('Question').fill(q);
      await page.keyboard.press('Enter');
      await expect.poll(() => page.locator('.msg.bot .votes').count(), { timeout: 15_000 }).toBe(q.startsWith('And') ? 2 : 1);
    }
    const conversation = await page.evaluate(() => sessionStorage.getItem('teamllmConversation'));
    expect(conversation).toBeTruthy();
    // The page asks as its anonymous session: the id in the signed HttpOnly cookie the server set.
    const cookie = (await page.context().cookies()).find((c) => c.name === 'teamllm_session')!;
    expect(cookie).toMatchObject({ httpOnly: true, sameSite: 'Lax' });
    const sessionId = cookie.value.slice(0, cookie.value.lastIndexOf('.'));
    const turns = await runtime.store.recentTurns(`web::anon:${sessionId}:${conversation}`, 10);
    expect(turns.map((t) => t.role)).toEqual(['user', 'assistant', 'user', 'assistant']);
    await page.getByText('New conversation').click();
    expect(await page.locator('.msg').count()).toBe(0);
    expect(await page.evaluate(() => sessionStorage.getItem('teamllmConversation'))).not.toBe(conversation);
  });
});
