import { existsSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const SAMPLE_HANDBOOK = resolve(dirname(fileURLToPath(import.meta.url)), '../../../examples/handbook');

/**
 * What to train on when an admin gives no `data=`: the company's own text collected under
 * `$TEAMLLM_HOME/corpus`, else the documents of the built-in sample handbook.
 */
export function defaultCorpus(home: string): string[] {
  const corpus = join(home, 'corpus');
  if (existsSync(corpus)) return [corpus];
  return [join(SAMPLE_HANDBOOK, 'en'), join(SAMPLE_HANDBOOK, 'zh')];
}
