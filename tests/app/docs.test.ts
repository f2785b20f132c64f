import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { CONFIG_KEYS } from '../../src/app/config.ts';

const docs = (name: string) => readFileSync(join(import.meta.dirname, '../../docs', name), 'utf8');

describe('docs stay true', () => {
  it('docs/configuration.md lists every configuration key', () => {
    const page = docs('configuration.md');
    const missing = Object.keys(CONFIG_KEYS).filter((k) => !page.includes(`\`${k}\``));
    expect(missing).toEqual([]);
  });
});
