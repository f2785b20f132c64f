/**
 * Knowledge base speed: ingestion throughput, and hybrid search latency over 10,000 passages
 * (BM25 + the query's embedding + Chroma + fusion, i.e. everything `kb search` does).
 *   npm run bench -- kb [--chunks 10000] [--queries 300]
 *
 * The corpus is the sample handbook (en + zh) copied with each copy's numbers and headings
 * changed (so no two passages are identical and none is dropped as a duplicate) until it has
 * --chunks passages. A "page" is 2,000 characters of source text, about one printed page.
 * The encoder has the default shape (what search speed depends on) but is trained only briefly:
 * retrieval quality is `teamllm eval retrieval`'s business, not this benchmark's.
 */
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { LocalEmbeddings, LocalKnowledgeBase, openKnowledgeBase, readQuestions } from '../src/rag/index.ts';
import { trainEncoder } from '../src/rag/encoder-training.ts';

const HANDBOOK = join(import.meta.dirname, '../examples/handbook');
const PAGE_CHARS = 2000;

function percentile(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
}

/** Copy `i` of a handbook file: numbers shifted and headings tagged, so every passage is new text. */
function variant(markdown: string, i: number): string {
  return markdown
    .replace(/\d+/g, (n) => String(Number(n) + i))
    .replace(/^(#{1,6} .+)$/gm, `$1 (site ${i})`);
}

export async function run(argv: string[]): Promise<void> {
  const { values } = parseArgs({ args: argv, options: { chunks: { type: 'string', default: '10000' }, queries: { type: 'string', default: '300' } } });
  const targetChunks = Number(values.chunks);
  const queryCount = Number(values.queries);
  const work = mkdtempSync(join(tmpdir(), 'teamllm-bench-kb-'));
  try {
    // One copy of the handbook, to size the corpus and train the encoder on.
    const sample = new LocalKnowledgeBase(':memory:');
    await sample.addPaths([join(HANDBOOK, 'en'), join(HANDBOOK, 'zh')], { baseDir: HANDBOOK });
    const perCopy = sample.chunkCount;
    const copies = Math.ceil(targetChunks / perCopy);
    const files = ['en', 'zh'].flatMap((lang) => readdirSync(join(HANDBOOK, lang)).map((f) => ({ name: `${lang}/${f}`, text: readFileSync(join(HANDBOOK, lang, f), 'utf8') })));
    const corpus = join(work, 'corpus');
    let characters = 0;
    for (let i = 0; i < copies; i++) {
      for (const f of files) {
        const text = variant(f.text, i);
        characters += text.length;
        mkdirSync(join(corpus, `copy-${i}`, f.name, '..'), { recursive: true });
        writeFileSync(join(corpus, `copy-${i}`, f.name), text);
      }
    }
    process.stderr.write(`corpus: ${copies} copies x ${files.length} files (${perCopy} passages per copy), ${(characters / 1e6).toFixed(1)} M characters\n`);

    const home = join(work, 'home');
    const { encoder, report } = await trainEncoder(sample.passages(), { steps: 20 });
    LocalEmbeddings.fromTraining(encoder, report, { sources: files.length, passages: perCopy }).save(join(home, 'embeddings'));
    sample.close();

    const opened = await openKnowledgeBase({ home });
    if (!opened.chroma) throw new Error('Chroma did not start');
    process.stderr.write(`Chroma: ${opened.chroma.url}; ingesting...\n`);
    const ingestStarted = performance.now();
    const added = await opened.kb.addPaths([corpus]);
    const ingestSeconds = (performance.now() - ingestStarted) / 1000;
    if (added.failed.length > 0) throw new Error(`ingestion failed for ${added.failed.length} files: ${added.failed[0]!.reason}`);
    const chunks = opened.kb.chunkCount;

    const questions = readQuestions(join(HANDBOOK, 'questions.jsonl')).map((q) => q.question);
    const time = async (fn: (q: string) => Promise<unknown>) => {
      for (let i = 0; i < 20; i++) await fn(questions[i % questions.length]!); // warm-up
      const ms: number[] = [];
      for (let i = 0; i < queryCount; i++) {
        const started = performance.now();
        await fn(questions[i % questions.length]!);
        ms.push(performance.now() - started);
      }
      return ms.sort((a, b) => a - b);
    };
    const hybrid = await time((q) => opened.kb.search(q, 5));
    const bm25 = await time((q) => opened.kb.search(q, 5, { mode: 'bm25' }));
    const embed = await time((q) => opened.embeddings!.embedQuery(q));
    await opened.close();

    const figures = {
      chunks,
      docs: added.added.length,
      ingest_s: ingestSeconds.toFixed(1),
      ingest_pages_per_s: (characters / PAGE_CHARS / ingestSeconds).toFixed(1),
      ingest_docs_per_s: (added.added.length / ingestSeconds).toFixed(1),
      ingest_chunks_per_s: (chunks / ingestSeconds).toFixed(0),
      search_p50_ms: percentile(hybrid, 50).toFixed(2),
      search_p95_ms: percentile(hybrid, 95).toFixed(2),
      bm25_p50_ms: percentile(bm25, 50).toFixed(2),
      embed_query_p50_ms: percentile(embed, 50).toFixed(3),
    };
    process.stdout.write(`${Object.entries(figures).map(([k, v]) => `${k}=${v}`).join(' ')}\n`);
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
}
