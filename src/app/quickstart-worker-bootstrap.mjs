// Worker threads start without the TypeScript loader the main thread has; register it, then run
// the quickstart worker. Plain JavaScript on purpose: this file must load before TypeScript can.
import { register } from 'tsx/esm/api';

register();
await import('./quickstart-worker.ts');
