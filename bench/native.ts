/** `npm run bench -- native`: the native backend against wasm on the baby-GPT step, generation, and sgemm peak. */
export { run } from '../src/model/native/bench.ts';
