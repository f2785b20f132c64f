/**
 * One bot process for `npm run bench -- serve --store … --processes …`: the runtime with the model
 * stubbed (answers at once), on a free port; prints `READY <url>`, stops on SIGTERM.
 */
import { loadConfig } from '../src/app/config.ts';
import { createRuntime, startServer } from '../src/app/runtime.ts';
import { silentLogger, type AnswerEvent, type Answerer } from '../src/core/index.ts';

const instantAnswerer: Answerer = {
  model: { name: 'stub', version: '0', kind: 'language-model' },
  async *answer(): AsyncIterable<AnswerEvent> {
    yield { type: 'sources', sources: [{ source: 'a.md', title: 'A', text: 'stub passage', score: 1 }] };
    yield { type: 'token', text: 'stub ' };
    yield { type: 'token', text: 'answer' };
    yield { type: 'done', prompt: 'stub' };
  },
};

const config = loadConfig({ cwd: process.env.TEAMLLM_HOME! });
const runtime = await createRuntime(config, { logger: silentLogger, answerer: instantAnswerer, defaultMetrics: false });
const server = await startServer(runtime, 0, '127.0.0.1');
process.stdout.write(`READY ${server.url}\n`);
process.once('SIGTERM', () => {
  void (async () => {
    await server.close();
    await runtime.close();
    process.exit(0);
  })();
});
