/**
 * One bot process for `npm run bench -- serve --store … --processes …`: the runtime with the model
 * stubbed (answers at once), on a free port; prints `READY <url>`, stops on SIGTERM.
 */
import { loadConfig } from '../src/app/config.ts';
import { createRuntime, startServer } from '../src/app/runtime.ts';
import { silentLogger } from '../src/core/index.ts';
import { instantAnswerer } from './_instant-answerer.ts';

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
