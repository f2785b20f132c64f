/** Reading a training corpus from files and folders. */
import { promises as fs } from 'node:fs';
import path from 'node:path';

export const TEXT_EXTENSIONS = new Set(['.txt', '.md', '.markdown', '.text', '.rst', '.csv', '.json', '.jsonl', '.html', '.htm']);

/** Every text file under the given paths (folders walked recursively, sorted for reproducibility). */
export async function listCorpusFiles(paths: string | string[]): Promise<string[]> {
  const out: string[] = [];
  const visit = async (p: string, explicit: boolean) => {
    const st = await fs.stat(p);
    if (st.isDirectory()) {
      const names = (await fs.readdir(p)).filter((n) => !n.startsWith('.')).sort();
      for (const n of names) await visit(path.join(p, n), false);
    } else if (explicit || TEXT_EXTENSIONS.has(path.extname(p).toLowerCase())) {
      out.push(p);
    }
  };
  for (const p of Array.isArray(paths) ? paths : [paths]) await visit(p, true);
  return out;
}

/** The files' texts, joined with blank lines between documents. */
export async function readCorpus(paths: string | string[]): Promise<string> {
  const files = await listCorpusFiles(paths);
  if (files.length === 0) throw new Error(`No text files found in ${[paths].flat().join(', ')}`);
  const texts: string[] = [];
  for (const f of files) texts.push(await fs.readFile(f, 'utf8'));
  return texts.length === 1 ? texts[0]! : texts.join('\n\n');
}
