/**
 * What the quickstart trains on: the sample handbook's documents and its question set, or a
 * company's own documents (`teamllm quickstart --docs DIR [--questions FILE]`).
 */
import { existsSync, promises as fs, statSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { readDocuments, type SourceDocument } from '../training/sft/qa-generator.ts';
import { SAMPLE_KB_DIR } from './sample-kb.ts';

export interface QuickstartInputs {
  /** Folders (read recursively, as `kb add` reads them) or files. */
  docs: string[];
  /** Sources are named relative to this folder. */
  docsBase: string;
  /**
   * The question set of the promotion gate (its `test` split, else all of it; the other splits are
   * trained on). Without one, the gate asks generated questions of held-out passages.
   */
  questions?: string;
  /** The built-in sample handbook: its documents go into the knowledge base the sample way. */
  sample?: boolean;
}

export function sampleInputs(dir = SAMPLE_KB_DIR): QuickstartInputs {
  return { docs: [join(dir, 'en'), join(dir, 'zh')], docsBase: dir, questions: join(dir, 'questions.jsonl'), sample: true };
}

/** A company's own documents: a folder (or one file) and, optionally, its question set. */
export function docsInputs(docs: string, questions?: string): QuickstartInputs {
  const dir = resolve(docs);
  if (!existsSync(dir)) throw new Error(`the documents folder ${dir} does not exist`);
  if (questions !== undefined && !existsSync(resolve(questions))) throw new Error(`the questions file ${resolve(questions)} does not exist`);
  const isFile = !statSync(dir).isDirectory();
  return { docs: [dir], docsBase: isFile ? dirname(dir) : dir, ...(questions !== undefined ? { questions: resolve(questions) } : {}), sample: false };
}

/** "the sample handbook" or "the documents in /srv/handbook". */
export function describeInputs(inputs: QuickstartInputs): string {
  return inputs.sample ? 'the sample handbook' : `the documents in ${inputs.docs.join(', ')}`;
}

/** The document files of the inputs: what `readDocuments` and `kb add` read. */
export async function documentFiles(paths: string[]): Promise<string[]> {
  const out: string[] = [];
  const visit = async (p: string, explicit: boolean) => {
    const st = await fs.stat(p);
    if (st.isDirectory()) {
      for (const n of (await fs.readdir(p)).filter((n) => !n.startsWith('.')).sort()) await visit(join(p, n), false);
    } else if (explicit || DOCUMENT_FILE.test(p)) out.push(p);
  };
  for (const p of paths) await visit(p, true);
  return out;
}
const DOCUMENT_FILE = /\.(md|markdown|txt|text|html?|pdf|docx)$/i;

export async function readInputDocuments(inputs: QuickstartInputs, log: (line: string) => void): Promise<SourceDocument[]> {
  const documents = await readDocuments(inputs.docs, inputs.docsBase, (source, reason) => log(`${source}: skipped (${reason})`));
  if (documents.length === 0) throw new Error(`no documents to train on in ${inputs.docs.join(', ')} (md, txt, html, pdf, docx)`);
  return documents;
}
