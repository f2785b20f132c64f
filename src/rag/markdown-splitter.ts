import { RecursiveCharacterTextSplitter } from '@langchain/textsplitters';
import type { LoadedDocument } from './loaders.ts';

export interface Chunk {
  /** Heading path, e.g. "Leave and holidays > Sick leave". */
  title: string;
  text: string;
  /** Position of the chunk within its document, from 0. */
  position: number;
  /** PDF page the chunk comes from, from 1. */
  page?: number;
}

/**
 * LangChain keeps a separator at the start of the next piece ("。Next sentence"); a sentence
 * should keep its own full stop, so split after the separator instead.
 */
class SentenceEndSplitter extends RecursiveCharacterTextSplitter {
  override splitOnSeparator(text: string, separator: string): string[] {
    if (!separator) return super.splitOnSeparator(text, separator);
    const escaped = separator.replace(/[/\-\\^$*+?.()|[\]{}]/g, '\\$&');
    return text.split(new RegExp(`(?<=${escaped})`)).filter((s) => s !== '');
  }
}

/** Sentence ends of Chinese and English prose, tried before falling back to spaces. */
const SEPARATORS = ['\n\n', '\n', '。', '！', '？', '；', '. ', '! ', '? ', '; ', '，', ', ', ' ', ''];

/**
 * Splits markdown at its headings (each chunk knows the path of headings above it), then cuts
 * long sections at paragraph and sentence ends, Chinese punctuation included.
 */
export async function splitMarkdown(markdown: string, fallbackTitle: string, chunkSize = 700): Promise<Chunk[]> {
  const splitter = new SentenceEndSplitter({
    chunkSize,
    chunkOverlap: 80,
    separators: SEPARATORS,
    keepSeparator: true,
  });
  const sections: { path: string[]; lines: string[] }[] = [];
  const path: string[] = [];
  let current = { path: [] as string[], lines: [] as string[] };
  let inFence = false;
  for (const line of markdown.split(/\r?\n/)) {
    if (/^\s*(```|~~~)/.test(line)) inFence = !inFence;
    const heading = inFence ? null : /^(#{1,6})\s+(.+?)\s*#*\s*$/.exec(line);
    if (heading) {
      sections.push(current);
      const level = heading[1]!.length;
      path.length = Math.min(path.length, level - 1);
      path[level - 1] = heading[2]!;
      current = { path: path.filter(Boolean), lines: [] };
    } else current.lines.push(line);
  }
  sections.push(current);
  const chunks: Chunk[] = [];
  for (const section of sections) {
    const body = section.lines.join('\n').trim();
    if (!body) continue;
    const title = section.path.length > 0 ? section.path.join(' > ') : fallbackTitle;
    for (const piece of await splitter.splitText(body)) {
      const text = piece.trim();
      if (text) chunks.push({ title, text, position: chunks.length });
    }
  }
  return chunks;
}

/** Chunks of a loaded document: PDF page by page (each chunk knows its page), anything else as markdown. */
export async function splitDocument(doc: LoadedDocument, chunkSize = 700): Promise<Chunk[]> {
  if (!doc.pages) return splitMarkdown(doc.text, doc.title, chunkSize);
  const chunks: Chunk[] = [];
  for (const [i, page] of doc.pages.entries()) {
    for (const c of await splitMarkdown(page, doc.title, chunkSize)) chunks.push({ ...c, position: chunks.length, page: i + 1 });
  }
  return chunks;
}
