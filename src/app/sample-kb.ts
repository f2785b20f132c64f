import { existsSync, readdirSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Logger } from '../core/index.ts';
import type { LocalKnowledgeBase } from '../rag/index.ts';

export const PACKAGE_ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
export const SAMPLE_KB_DIR = join(PACKAGE_ROOT, 'examples/handbook');

/**
 * Loads the sample handbook into an empty knowledge base, once per data folder: after an admin
 * removes the sample documents they stay removed. Returns how many documents were added, or
 * undefined when nothing was loaded.
 */
export async function loadSampleKnowledgeBase(kb: LocalKnowledgeBase, home: string, logger: Logger): Promise<number | undefined> {
  const sampleMarker = join(home, 'kb', 'sample-loaded');
  if (existsSync(sampleMarker) || (await kb.list()).length > 0 || !existsSync(SAMPLE_KB_DIR)) return undefined;
  const report = await kb.addPaths([join(SAMPLE_KB_DIR, 'en'), join(SAMPLE_KB_DIR, 'zh')], { baseDir: SAMPLE_KB_DIR });
  writeFileSync(sampleMarker, new Date().toISOString());
  logger.info({ documents: report.added.length, failed: report.failed }, 'loaded the sample knowledge base (examples/handbook)');
  return report.added.length;
}

/** How many of the sample handbook's documents (by their source, en/… and zh/…) the knowledge base holds. */
export async function sampleDocumentsIn(kb: Pick<LocalKnowledgeBase, 'list'>): Promise<number> {
  if (!existsSync(SAMPLE_KB_DIR)) return 0;
  const sample = new Set(['en', 'zh'].flatMap((lang) => (existsSync(join(SAMPLE_KB_DIR, lang)) ? readdirSync(join(SAMPLE_KB_DIR, lang)).map((f) => `${lang}/${f}`) : [])));
  return (await kb.list()).filter((s) => sample.has(s.source)).length;
}
