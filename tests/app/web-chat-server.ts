/**
 * A bot serving the web chat API with a given answerer, on a fresh home, for tests that talk to it
 * as a portal would: `post` sends JSON with the service token, `chat` asks through /api/chat.
 */
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadConfig } from '../../src/app/config.ts';
import { createRuntime, startServer, type RunningServer, type Runtime } from '../../src/app/runtime.ts';
import { silentLogger, type Answerer, type Source } from '../../src/core/index.ts';

const SERVICE_TOKEN = 'test-service-token-0123456789';

export interface WebChatServer {
  runtime: Runtime;
  server: RunningServer;
  post(route: string, body: Record<string, unknown>): Promise<Response>;
  chat(body: Record<string, unknown>): Promise<{ status: number; body: { answerId: string | null; answer: string; direct: string; outcome: string; error?: string; sources?: Source[]; near?: Source[] } }>;
  close(): Promise<void>;
}

export async function startWebChat(answerer: Answerer, name: string): Promise<WebChatServer> {
  const home = mkdtempSync(join(tmpdir(), `teamllm-${name}-`));
  // Many questions from a few users in a few seconds: the rate limit is not what these tests test.
  const config = loadConfig({ env: { TEAMLLM_HOME: home, TEAMLLM_SERVICE_TOKENS: `portal=${SERVICE_TOKEN}`, TEAMLLM_RATE_BURST: '100', TEAMLLM_RATE_PER_MINUTE: '100' }, cwd: home });
  const runtime = await createRuntime(config, { logger: silentLogger, answerer, defaultMetrics: false });
  const server = await startServer(runtime, 0, '127.0.0.1');
  const post = (route: string, body: Record<string, unknown>) =>
    fetch(`${server.url}${route}`, { method: 'POST', headers: { 'content-type': 'application/json', authorization: `Bearer ${SERVICE_TOKEN}` }, body: JSON.stringify(body) });
  return {
    runtime,
    server,
    post,
    chat: async (body) => {
      const res = await post('/api/chat', body);
      return { status: res.status, body: (await res.json()) as Awaited<ReturnType<WebChatServer['chat']>>['body'] };
    },
    close: async () => {
      await server.close();
      await runtime.close();
    },
  };
}
