// Worker threads start without the TypeScript loader the main thread has: next to the sources,
// register it and run chat-worker.ts; built to JavaScript (chat-worker.js beside this file), run
// that. Plain JavaScript on purpose: this file must load before TypeScript can.
import { existsSync } from 'node:fs';

const source = new URL('./chat-worker.ts', import.meta.url);
if (existsSync(source)) {
  const { register } = await import('tsx/esm/api');
  register();
  await import(source.href);
} else {
  await import(new URL('./chat-worker.js', import.meta.url).href);
}
