// Worker-thread bootstrap: registers tsx in this thread, then runs the TypeScript entry.
import { register } from 'tsx/esm/api';

register();
await import('./pretrain-worker.ts');
