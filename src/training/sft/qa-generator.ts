/**
 * Question/answer examples built from the company's own documents, for a company that has no
 * curated SFT data: the model learns to answer questions *from the passages in its context*.
 *
 * Rules (English and Chinese markdown):
 * - facts: a sentence or list item holding a typed value (an amount of money, a percentage, a
 *   date, a time of day, a count with its unit, a weekday, a year, a bold name) becomes a
 *   question by putting the matching question word in the value's place
 *   ("Carried-over days expire on **1 July**." -> "Carried-over days expire on what date?" / "1 July");
 * - tables: each cell is asked for by its row and column ("What is the annual leave for 5–9 years?");
 * - definitions: "**Term**: text", "Term is …", "X是…" -> "What is Term?" / "X是什么？";
 * - headings: "What does the handbook say about <heading>?" -> the section's first sentence.
 *
 * Each example keeps the passage it came from (`evidence`), which becomes its context; with a
 * knowledge base, `withRetrievedContext` puts it among the passages retrieval returns for the
 * question, like at answer time.
 */
import { createHash } from 'node:crypto';
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { Random } from '../../model/random.ts';
import { loadDocument } from '../../rag/loaders.ts';
import { unwrapMarkdown } from '../../rag/markdown-lines.ts';
import { plainText as plain, SENTENCE_SPLIT, tableCells } from '../../rag/answer-candidates.ts';
import type { Passage } from '../../model/qa-prompt.ts';
import type { SftExample } from './data.ts';
import { typedValues, type TypedValue } from '../../rag/typed-values.ts';
import { CJK } from '../../model/text/cjk.ts';

export type GeneratedKind = 'fact' | 'table' | 'definition' | 'heading';

export interface GeneratedQa {
  question: string;
  answer: string;
  kind: GeneratedKind;
  lang: 'en' | 'zh';
  /** The section the answer is in (source, heading path, section text). */
  evidence: Passage & { source: string; title: string };
  /** The sentence, row or line the answer was taken from. */
  sentence: string;
}

export interface SourceDocument {
  /** Name shown in citations, e.g. "en/leave-and-holidays.md". */
  source: string;
  text: string;
  title?: string;
}

export interface GenerateQaOptions {
  /** Which rules run (default all). */
  kinds?: GeneratedKind[];
  /** At most this many questions per section, per 1,500 characters of it (default 12). */
  maxPerSection?: number;
  /** At most this many in all (default unlimited), picked at random (seeded). */
  max?: number;
  seed?: number;
  /** 'span': the value itself ("25 days"); 'sentence': the sentence it is in (default 'span'). */
  answerStyle?: 'span' | 'sentence';
}

interface Entity {
  start: number;
  end: number;
  text: string;
  en: string;
  zh: string;
}

const ZH_COUNT_WORD = /^(个月|天|周|年|小时|分钟|次|人|名|个|份|家|层|晚|倍|个工作日|工作日|周岁)$/;

/** The question words that ask for a typed value, in English and Chinese. */
function questionWords(v: TypedValue): { en: string; zh: string } {
  switch (v.kind) {
    case 'money':
      return { en: 'how much', zh: '多少钱' };
    case 'percent':
      return { en: 'what percentage', zh: '百分之多少' };
    case 'time':
      return { en: 'what time', zh: '几点' };
    case 'date':
      return { en: 'what date', zh: '哪一天' };
    case 'weekday':
      return { en: 'which day', zh: '哪天' };
    case 'year':
      return { en: 'what year', zh: '哪一年' };
    case 'email':
      return { en: 'what e-mail address', zh: '哪个邮箱' };
    case 'phone':
      return { en: 'what number', zh: '什么电话' };
    case 'count': {
      const unit = v.unit ?? '';
      const en = CJK.test(unit) ? 'how many' : `how many ${unit.replace(/^(day|week|month|year|hour|minute|second)$/, '$1s')}`;
      return { en, zh: ZH_COUNT_WORD.test(unit) ? `几${unit}` : '多少' };
    }
  }
}

/** Typed values in a sentence, earliest first, non-overlapping, with the words that ask for them. */
function findEntities(s: string): Entity[] {
  return typedValues(s).map((v) => ({ start: v.start, end: v.end, text: v.text, ...questionWords(v) }));
}

/** Markdown inline syntax removed: bold, italics, code, links. */
function stripListMarker(line: string): string {
  return line.replace(/^\s*(?:[-*+]|\d+[.)])\s+/, '');
}

function sentencesOf(line: string): string[] {
  return line
    .split(SENTENCE_SPLIT)
    .map((s) => s.trim())
    .filter((s) => s.length >= 6);
}

function isZh(s: string): boolean {
  return CJK.test(s);
}

function questionFrom(sentence: string, e: Entity, zh: boolean): string {
  const before = sentence.slice(0, e.start).replace(/\s+$/, '');
  const after = sentence.slice(e.end).replace(/^\s+/, '');
  if (zh) {
    const body = `${before}${e.zh}${after}`.replace(/[。！；;，,：:\s]+$/u, '');
    return `${body}？`;
  }
  // Drop what follows a clause end after the value: "X on 1 July of that year. More" -> "X on what date of that year?"
  const tail = after.replace(/[.;:!?]+$/, '').split(/[.;:](?:\s|$)/)[0] ?? '';
  let body = `${before}${before ? ' ' : ''}${e.en}${tail ? (/^[,)]/.test(tail) ? '' : ' ') + tail : ''}`.trim();
  body = body.replace(/[.,;:!]+$/, '');
  return `${body.charAt(0).toUpperCase()}${body.slice(1)}?`;
}

interface Section {
  title: string;
  heading: string;
  lines: string[];
  body: string;
}

function sectionsOf(doc: SourceDocument): Section[] {
  const sections: Section[] = [];
  const pathParts: string[] = [];
  let current: Section = { title: doc.title ?? doc.source, heading: '', lines: [], body: '' };
  let inFence = false;
  const flush = () => {
    current.body = current.lines.join('\n').trim();
    if (current.body) sections.push(current);
  };
  // Hard-wrapped paragraphs as one line each: facts are read a line at a time.
  for (const line of unwrapMarkdown(doc.text).split('\n')) {
    if (/^\s*(```|~~~)/.test(line)) inFence = !inFence;
    const h = inFence ? null : /^(#{1,6})\s+(.+?)\s*#*\s*$/.exec(line);
    if (h) {
      flush();
      const level = h[1]!.length;
      pathParts.length = Math.min(pathParts.length, level - 1);
      pathParts[level - 1] = plain(h[2]!);
      current = { title: pathParts.filter(Boolean).join(' > '), heading: plain(h[2]!), lines: [], body: '' };
    } else current.lines.push(line);
  }
  flush();
  return sections;
}

function shorten(s: string, max = 220): string {
  if (s.length <= max) return s;
  const cut = s.slice(0, max);
  const at = Math.max(cut.lastIndexOf('. '), cut.lastIndexOf('。'), cut.lastIndexOf('; '));
  return at > 40 ? cut.slice(0, at + 1) : `${cut.replace(/\s+\S*$/, '')}…`;
}

/** Question/answer pairs from one document's sections. */
export function generateQa(docs: SourceDocument[], options: GenerateQaOptions = {}): GeneratedQa[] {
  const kinds = new Set(options.kinds ?? ['fact', 'table', 'definition', 'heading']);
  const perSection = options.maxPerSection ?? 12;
  const style = options.answerStyle ?? 'span';
  const out: GeneratedQa[] = [];
  const seen = new Set<string>();
  for (const doc of docs) {
    for (const section of sectionsOf(doc)) {
      const evidence = { source: doc.source, title: section.title, text: section.body };
      const local: GeneratedQa[] = [];
      const push = (q: Omit<GeneratedQa, 'evidence' | 'lang'>) => {
        const key = q.question.toLowerCase();
        if (seen.has(key) || q.answer.length === 0 || q.question.length < 8) return;
        seen.add(key);
        local.push({ ...q, lang: isZh(q.question) ? 'zh' : 'en', evidence });
      };
      // Tables.
      if (kinds.has('table')) {
        const lines = section.lines;
        for (let i = 0; i + 2 < lines.length; i++) {
          const header = tableCells(lines[i]!);
          if (!header || !/^\s*\|?\s*:?-{2,}/.test(lines[i + 1]!)) continue;
          for (let r = i + 2; r < lines.length; r++) {
            const row = tableCells(lines[r]!);
            if (!row) break;
            for (let j = 1; j < Math.min(row.length, header.length); j++) {
              if (!row[0] || !row[j] || !header[j]) continue;
              const zh = isZh(header[j]! + row[0]);
              const question = zh ? `${row[0]}的${header[j]}是多少？` : `What is the ${header[j]!.replace(/^[A-Z](?![A-Z])/, (c) => c.toLowerCase())} for ${row[0]}?`;
              push({ question, answer: row[j]!, kind: 'table', sentence: plain(lines[r]!) });
            }
          }
        }
      }
      for (const rawLine of section.lines) {
        if (!rawLine.trim() || tableCells(rawLine)) continue;
        const line = stripListMarker(rawLine);
        // Definitions: "**Term**: text" / "**Term** — text".
        if (kinds.has('definition')) {
          const d = /^\*\*([^*]{2,40})\*\*\s*(?:[:：—–-]|\s+[-–—])\s*(.{6,})$/.exec(line.trim());
          if (d) {
            const term = plain(d[1]!).replace(/[:：]$/, '');
            const def = shorten(plain(d[2]!));
            push({ question: isZh(term) ? `${term}是什么？` : `What is ${term}?`, answer: def, kind: 'definition', sentence: plain(line) });
          }
        }
        for (const sentenceMd of sentencesOf(line)) {
          const sentence = plain(sentenceMd);
          if (kinds.has('definition')) {
            const en = /^((?:The )?(?!(?:A|An|The|This|That|It|We|You|If|All|Each|Every)\b)[A-Z][\w&-]*(?: [A-Z][\w&-]*){0,2}) (?:is|are) ((?:the|our|a|an) .{6,120}?)[.]?$/.exec(sentence);
            const zh = /^([\u3400-\u9fffA-Za-z0-9]{2,12})是([^，。；]{3,40})[。]?$/u.exec(sentence);
            if (en && !findEntities(en[1]!).length) push({ question: `What is ${en[1]!.replace(/^The /, 'the ')}?`, answer: shorten(en[2]!), kind: 'definition', sentence });
            else if (zh) push({ question: `${zh[1]}是什么？`, answer: zh[2]!, kind: 'definition', sentence });
          }
          if (kinds.has('fact')) {
            const zh = isZh(sentence);
            const entities = findEntities(sentence);
            // Bold names and terms that are not typed values: "who" / "what".
            for (const m of sentenceMd.matchAll(/\*\*([^*]{2,40})\*\*/g)) {
              const text = plain(m[1]!);
              const at = sentence.indexOf(text);
              // A bold label at the start ("**Bike lease** through …") is a heading, not a fact.
              if (at <= 0 || findEntities(text).length || /^[\s"“”'‘’(（]*$/.test(sentence.slice(0, at))) continue;
              const person = /^[A-Z][a-z]+(?:[ -][A-Z][a-z]+){1,2}$/.test(text);
              entities.push({ start: at, end: at + text.length, text, en: person ? 'who' : 'what', zh: person ? '谁' : '什么' });
            }
            for (const e of entities.slice(0, 3)) {
              const question = questionFrom(sentence, e, zh);
              if (question.replace(/[?？]/g, '').trim().length < 12) continue;
              push({ question, answer: style === 'sentence' ? sentence : e.text, kind: 'fact', sentence });
            }
          }
        }
      }
      // Headings.
      if (kinds.has('heading') && section.heading) {
        const first = section.lines.map((l) => l.trim()).find((l) => l && !tableCells(l) && !/^[-*+]\s*$/.test(l));
        if (first) {
          const line = plain(stripListMarker(first));
          const answer = shorten(sentencesOf(line)[0] ?? line);
          const zh = isZh(section.heading);
          push({ question: zh ? `关于“${section.heading}”，有什么规定？` : `What does the handbook say about ${section.heading.toLowerCase()}?`, answer, kind: 'heading', sentence: answer });
        }
      }
      // A long section (a law's chapter, a page without subheadings) gets its share per 1,500 characters.
      out.push(...local.slice(0, perSection * Math.max(1, Math.ceil(section.body.length / 1500))));
    }
  }
  if (options.max !== undefined && out.length > options.max) {
    new Random(options.seed ?? 7).shuffle(out);
    out.length = options.max;
  }
  return out;
}

/** The document formats `readDocuments` reads (those `kb add` reads: src/rag/loaders.ts). */
const DOCUMENT_FILE = /\.(md|markdown|txt|text|html?|pdf|docx)$/i;

/**
 * The documents of files and folders (recursively, hidden files skipped) as `kb add` reads them:
 * Markdown and text as they are, HTML and DOCX as markdown (headings kept), PDF as its text;
 * `source` is relative to `baseDir`. Other files are skipped; `onSkip` hears about unreadable ones.
 */
export async function readDocuments(paths: string | string[], baseDir?: string, onSkip?: (file: string, reason: string) => void): Promise<SourceDocument[]> {
  const docs: SourceDocument[] = [];
  const walk = async (p: string, base: string) => {
    const st = await fs.stat(p);
    if (st.isDirectory()) {
      for (const n of (await fs.readdir(p)).sort()) if (!n.startsWith('.')) await walk(path.join(p, n), base);
    } else if (DOCUMENT_FILE.test(p)) {
      const source = path.relative(base, p).split(path.sep).join('/');
      if (/\.(md|markdown|txt|text)$/i.test(p)) docs.push({ source, text: (await fs.readFile(p, 'utf8')).replace(/^\uFEFF/, '') });
      else {
        try {
          const loaded = await loadDocument(source, await fs.readFile(p));
          docs.push({ source, text: loaded.text, title: loaded.title });
        } catch (err) {
          onSkip?.(source, err instanceof Error ? err.message : String(err));
        }
      }
    }
  };
  for (const p of [paths].flat()) {
    const st = await fs.stat(p);
    await walk(p, baseDir ?? (st.isDirectory() ? p : path.dirname(p)));
  }
  return docs;
}

/** A passage of a knowledge base as `LocalKnowledgeBase.passages()` lists it. */
export interface KbPassage {
  source: string;
  /** Heading path, "Leave > Sick leave". */
  title: string;
  text: string;
  position: number;
}

/**
 * The documents of a knowledge base, rebuilt from its passages: per source, in passage order, each
 * heading path written back as markdown headings and the splitter's overlap between consecutive
 * passages of one section removed, so `generateQa` sees the sections (and titles) retrieval has.
 */
export function documentsFromPassages(passages: KbPassage[]): SourceDocument[] {
  const bySource = new Map<string, KbPassage[]>();
  for (const p of passages) {
    const list = bySource.get(p.source) ?? [];
    list.push(p);
    bySource.set(p.source, list);
  }
  const docs: SourceDocument[] = [];
  for (const [source, list] of [...bySource].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))) {
    list.sort((a, b) => a.position - b.position);
    const lines: string[] = [];
    let previous: KbPassage | undefined;
    for (const p of list) {
      let text = p.text;
      if (previous && previous.title === p.title) text = withoutOverlap(previous.text, text);
      else {
        const parts = p.title.split(' > ');
        const before = previous?.title.split(' > ') ?? [];
        // Only the headings that changed: "A > B" after "A > C" writes "## B".
        let same = 0;
        while (same < parts.length - 1 && parts[same] === before[same]) same++;
        for (let i = same; i < parts.length; i++) lines.push(`${'#'.repeat(Math.min(i + 1, 6))} ${parts[i]}`, '');
      }
      lines.push(text, '');
      previous = p;
    }
    docs.push({ source, text: lines.join('\n') });
  }
  return docs;
}

/** `next` without the start it repeats from the end of `previous` (the splitter's chunk overlap). */
function withoutOverlap(previous: string, next: string): string {
  for (let k = Math.min(previous.length, next.length, 200); k >= 12; k--) {
    if (previous.endsWith(next.slice(0, k))) return next.slice(k).trimStart();
  }
  return next;
}

export interface HoldOutOptions {
  /** Share of the questions held out (default 0.1), by whole sections. */
  fraction?: number;
  /** At least this many held-out questions when there are enough (default 20; never over a quarter of them). */
  minQuestions?: number;
  /** At most this many held-out questions (default 50), picked at random among the held-out sections'. */
  maxQuestions?: number;
  seed?: number;
}

/**
 * Generated questions split for a promotion gate without a question set: whole sections (the
 * passage a question's answer is in) are held out, so no training example shares its passage
 * with a held-out question. Sections are taken in the order of a seeded hash of their source and
 * heading path (deterministic, independent of the questions' order) until `fraction` of the
 * questions — at least `minQuestions`, at most a quarter of them — are held out; at most
 * `maxQuestions` of those are asked. A document with few, long sections (a law's chapters) still
 * gives a gate of a useful size; at least one section is always left to train on.
 */
export function holdOutBySection(items: GeneratedQa[], options: HoldOutOptions = {}): { train: GeneratedQa[]; heldOut: GeneratedQa[] } {
  const fraction = options.fraction ?? 0.1;
  const seed = options.seed ?? 7;
  const sectionOf = (q: GeneratedQa) => `${q.evidence.source}\0${q.evidence.title}`;
  const sizes = new Map<string, number>();
  for (const q of items) sizes.set(sectionOf(q), (sizes.get(sectionOf(q)) ?? 0) + 1);
  const target = fraction <= 0 ? 0 : Math.max(1, Math.min(Math.max(Math.round(fraction * items.length), options.minQuestions ?? 20), Math.floor(items.length / 4)));
  const rank = (s: string) => createHash('sha256').update(`${seed}\0${s}`).digest('hex');
  const held = new Set<string>();
  let count = 0;
  for (const s of [...sizes.keys()].sort((a, b) => (rank(a) < rank(b) ? -1 : 1))) {
    if (count >= target || held.size >= sizes.size - 1) break;
    held.add(s);
    count += sizes.get(s)!;
  }
  const train = items.filter((q) => !held.has(sectionOf(q)));
  let heldOut = items.filter((q) => held.has(sectionOf(q)));
  const max = options.maxQuestions ?? 50;
  if (heldOut.length > max) {
    heldOut = new Random(seed).shuffle([...heldOut]).slice(0, max);
  }
  return { train, heldOut };
}

/** Anything with the knowledge base's search (src/core/services.ts KnowledgeBase). */
export interface PassageSearch {
  search(query: string, k: number): Promise<{ source: string; title: string; text: string }[]>;
}

function norm(s: string): string {
  return s.normalize('NFKC').toLowerCase().replace(/[\s*`_|]+/g, '');
}

/**
 * SFT examples with the context the model will have at answer time: the top `k` passages
 * retrieval finds for the question. When the evidence is not among them it replaces the last one
 * (at a random position), so every example is answerable from its context. Without a knowledge
 * base, the evidence goes with `k - 1` passages of other sections drawn at random.
 */
export async function withRetrievedContext(items: GeneratedQa[], kb: PassageSearch | undefined, options: { k?: number; seed?: number } = {}): Promise<SftExample[]> {
  const k = options.k ?? 3;
  const rng = new Random(options.seed ?? 11);
  const sections = [...new Map(items.map((q) => [`${q.evidence.source}#${q.evidence.title}`, q.evidence])).values()];
  const out: SftExample[] = [];
  for (const q of items) {
    let passages: Passage[];
    // The passage that holds the answer's own sentence (or table row), not just the same value elsewhere.
    const needle = norm(q.sentence).slice(0, 40);
    if (kb) {
      passages = (await kb.search(q.question, k)).map((p) => ({ source: p.source, title: p.title, text: p.text }));
      if (!passages.some((p) => norm(p.text).includes(needle))) {
        passages = passages.slice(0, Math.max(0, k - 1));
        passages.splice(rng.int(passages.length + 1), 0, q.evidence);
      }
    } else {
      passages = [q.evidence];
      const others = sections.filter((s) => s !== q.evidence);
      while (passages.length < k && others.length) passages.push(others.splice(rng.int(others.length), 1)[0]!);
      rng.shuffle(passages);
    }
    out.push({
      messages: [
        { role: 'user', content: q.question },
        { role: 'assistant', content: q.answer },
      ],
      context: passages,
      format: 'generated',
      id: `gen:${q.evidence.source}:${q.kind}:${out.length}`,
    });
  }
  return out;
}
