/**
 * `npm run bench -- <name> [options]`: runs bench/<name>.ts. Every benchmark ends with one line
 * of key=value figures so runs can be compared by script.
 */
import { readdirSync } from 'node:fs';
import { join } from 'node:path';

const [name, ...argv] = process.argv.slice(2);
const available = readdirSync(import.meta.dirname)
  .filter((f) => f.endsWith('.ts') && f !== 'index.ts' && !f.startsWith('_'))
  .map((f) => f.slice(0, -3));
if (!name || !available.includes(name)) {
  process.stderr.write(`usage: npm run bench -- <${available.join('|')}> [options]\n`);
  process.exit(name ? 2 : 0);
}
const bench = (await import(join(import.meta.dirname, `${name}.ts`))) as { run(argv: string[]): Promise<void> };
await bench.run(argv);
