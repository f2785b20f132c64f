/**
 * Turns the bytes of a document into text the splitter understands. Headings matter (they become
 * each passage's heading path), so HTML and DOCX are converted to markdown-style `#` headings;
 * PDF keeps its pages (a passage's page number is shown with the source).
 *
 * The loader libraries are used directly rather than through @langchain/community's loaders:
 * that package cannot be installed next to zod 4 (peer-dependency conflict), and its PDF loader
 * adds nested metadata that Chroma rejects anyway.
 */
import { basename, extname } from 'node:path';
import { convert, type FormatCallback } from 'html-to-text';

export type DocumentFormat = 'markdown' | 'text' | 'html' | 'pdf' | 'docx';

export interface LoadedDocument {
  format: DocumentFormat;
  title: string;
  /** Markdown (headings as `#` lines) or plain text; for PDF, the pages joined. */
  text: string;
  /** PDF only: the text of each page, from page 1. */
  pages?: string[];
}

const BY_EXTENSION: Record<string, DocumentFormat> = {
  '.md': 'markdown',
  '.markdown': 'markdown',
  '.txt': 'text',
  '.text': 'text',
  '.html': 'html',
  '.htm': 'html',
  '.pdf': 'pdf',
  '.docx': 'docx',
};

export const SUPPORTED_EXTENSIONS = Object.keys(BY_EXTENSION);

export class UnsupportedFormatError extends Error {}

/** The format of a document from its name, else its content type (URLs), else its first bytes. */
export function detectFormat(name: string, content: Uint8Array, contentType?: string): DocumentFormat {
  const ext = extname(name.replace(/[?#].*$/, '')).toLowerCase();
  const byName = BY_EXTENSION[ext];
  if (byName) return byName;
  const type = (contentType ?? '').split(';')[0]!.trim().toLowerCase();
  if (type === 'text/html' || type === 'application/xhtml+xml') return 'html';
  if (type === 'application/pdf') return 'pdf';
  if (type === 'text/markdown') return 'markdown';
  if (type === 'text/plain') return 'text';
  if (type.includes('wordprocessingml')) return 'docx';
  const head = Buffer.from(content.subarray(0, 512)).toString('latin1');
  if (head.startsWith('%PDF-')) return 'pdf';
  if (/^\s*(<!doctype html|<html)/i.test(head)) return 'html';
  throw new UnsupportedFormatError(`unsupported file type "${ext || type || 'none'}" (supported: ${SUPPORTED_EXTENSIONS.join(', ')})`);
}

export async function loadDocument(name: string, content: Uint8Array, contentType?: string): Promise<LoadedDocument> {
  const format = detectFormat(name, content, contentType);
  const fallbackTitle = basename(name.replace(/[?#].*$/, ''), extname(name.replace(/[?#].*$/, ''))) || name;
  switch (format) {
    case 'markdown':
    case 'text': {
      const text = decodeUtf8(content);
      return { format, text, title: /^#\s+(.+)$/m.exec(text)?.[1]?.trim() ?? fallbackTitle };
    }
    case 'html': {
      const html = decodeUtf8(content);
      const text = htmlToMarkdown(html);
      const title = /<title[^>]*>([^<]+)<\/title>/i.exec(html)?.[1]?.trim() ?? /^#\s+(.+)$/m.exec(text)?.[1]?.trim() ?? fallbackTitle;
      return { format, text, title: decodeEntities(title) };
    }
    case 'docx': {
      const mammoth = (await import('mammoth')).default;
      const { value: html } = await mammoth.convertToHtml({ buffer: Buffer.from(content) }).catch((err: unknown) => {
        throw new Error(`not a readable DOCX file (${err instanceof Error ? err.message : String(err)})`);
      });
      const text = htmlToMarkdown(html);
      return { format, text, title: /^#\s+(.+)$/m.exec(text)?.[1]?.trim() ?? fallbackTitle };
    }
    case 'pdf': {
      const pages = await pdfPages(content);
      const text = pages.join('\n\n');
      if (!text.trim()) throw new Error('the PDF has no text layer (a scan?): nothing to index');
      const firstLine = text.split('\n').find((l) => l.trim())?.trim() ?? '';
      return { format, text, pages, title: firstLine.length > 0 && firstLine.length <= 80 ? firstLine : fallbackTitle };
    }
  }
}

function decodeUtf8(content: Uint8Array): string {
  try {
    return new TextDecoder('utf-8', { fatal: true }).decode(content).replace(/^\uFEFF/, '');
  } catch {
    throw new Error('not valid UTF-8 text');
  }
}

function decodeEntities(text: string): string {
  return convert(text, { wordwrap: false });
}

/** `<h2>Sick leave</h2>` -> `## Sick leave`, so the markdown splitter sees the heading path. */
const markdownHeading: FormatCallback = (elem, walk, builder, options) => {
  builder.openBlock({ leadingLineBreaks: 2 });
  builder.addInline(`${'#'.repeat(Number(options.level ?? 1))} `);
  walk(elem.children ?? [], builder);
  builder.closeBlock({ trailingLineBreaks: 2 });
};

export function htmlToMarkdown(html: string): string {
  return convert(html, {
    wordwrap: false,
    formatters: { markdownHeading },
    selectors: [
      ...[1, 2, 3, 4, 5, 6].map((level) => ({ selector: `h${level}`, format: 'markdownHeading', options: { level } })),
      { selector: 'a', options: { ignoreHref: true } },
      { selector: 'img', format: 'skip' },
      { selector: 'nav', format: 'skip' },
      { selector: 'script', format: 'skip' },
      { selector: 'style', format: 'skip' },
      { selector: 'table', format: 'dataTable' },
    ],
  }).trim();
}

async function pdfPages(content: Uint8Array): Promise<string[]> {
  const { PDFParse } = await import('pdf-parse');
  // pdf.js takes ownership of (and detaches) the buffer it is given: hand it a copy.
  const parser = new PDFParse({ data: new Uint8Array(content) });
  try {
    const result = await parser.getText();
    return result.pages.sort((a, b) => a.num - b.num).map((p) => p.text.trim());
  } catch (err) {
    throw new Error(`not a readable PDF file (${err instanceof Error ? err.message : String(err)})`);
  } finally {
    await parser.destroy();
  }
}

export interface FetchedDocument {
  name: string;
  content: Uint8Array;
  contentType?: string;
}

/** Downloads a web page or file for `kb add <url>` (product code only: tests serve pages locally). */
export async function fetchDocument(url: string, options: { timeoutMs?: number; maxBytes?: number } = {}): Promise<FetchedDocument> {
  const response = await fetch(url, { signal: AbortSignal.timeout(options.timeoutMs ?? 30_000), redirect: 'follow' });
  if (!response.ok) throw new Error(`HTTP ${response.status} ${response.statusText}`.trim());
  const content = new Uint8Array(await response.arrayBuffer());
  const maxBytes = options.maxBytes ?? 50 * 1024 * 1024;
  if (content.length > maxBytes) throw new Error(`larger than ${Math.round(maxBytes / 1024 / 1024)} MB`);
  const contentType = response.headers.get('content-type') ?? undefined;
  return { name: url, content, ...(contentType ? { contentType } : {}) };
}

export function isUrl(path: string): boolean {
  return /^https?:\/\//i.test(path);
}
