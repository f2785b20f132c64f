import type { Command } from 'commander';
import { CliError, positiveInt, withRuntime } from '../shared.ts';
import { loadConfig } from '../../app/config.ts';
import { sampleDocumentsIn } from '../../app/sample-kb.ts';

/** `teamllm kb add|list|remove|search`. */
export function registerKb(program: Command): void {
  const kb = program.command('kb').description('the knowledge base');
  kb.command('add')
    .description('add files, folders or URLs (md, txt, html, pdf, docx); changed files are re-indexed, unchanged ones skipped')
    .argument('<paths...>')
    .option('--kb <name>', 'a named knowledge base (bind channels to it with TEAMLLM_CHANNEL_KB)')
    .action(async (paths: string[], opts: { kb?: string }) => {
      // A company adding its own documents to a new data folder wants those, not the fictional
      // sample handbook mixed in (its leave days would answer their employees): the sample loads
      // on an empty knowledge base only where nothing else is being added, unless configured.
      const configured = loadConfig({ file: program.opts<{ config?: string }>().config }).values.TEAMLLM_SAMPLE_KB !== undefined;
      await withRuntime(program, configured ? {} : { TEAMLLM_SAMPLE_KB: 'false' }, async (runtime) => {
        if (opts.kb !== undefined && !/^[a-zA-Z0-9._-]{1,64}$/.test(opts.kb)) throw new CliError('--kb takes a name of letters, digits, . _ -');
        const target = opts.kb ? await runtime.knowledge.get(opts.kb) : runtime.kb;
        const report = await target.addPaths(paths);
        for (const s of report.added) process.stdout.write(`added      ${s}\n`);
        for (const s of report.updated) process.stdout.write(`updated    ${s}\n`);
        for (const s of report.unchanged) process.stdout.write(`unchanged  ${s}\n`);
        for (const f of report.failed) process.stderr.write(`skipped    ${f.source}: ${f.reason}\n`);
        const ok = report.added.length + report.updated.length + report.unchanged.length;
        process.stdout.write(`${report.added.length} added, ${report.updated.length} updated, ${report.unchanged.length} unchanged, ${report.failed.length} skipped\n`);
        if (ok === 0 && report.failed.length > 0) throw new CliError('nothing could be added');
        const sample = opts.kb ? 0 : await sampleDocumentsIn(runtime.kb);
        if (sample > 0) process.stderr.write(`note: this knowledge base also holds ${sample} documents of the sample handbook (examples/handbook); remove them with teamllm kb remove <source> (teamllm kb list names them)\n`);
      });
    });
  kb.command('list')
    .description('documents with their passage counts and when they were indexed')
    .option('--json', 'print JSON')
    .action(async (opts: { json?: boolean }) => {
      await withRuntime(program, {}, async (runtime) => {
        const sources = await runtime.kb.list();
        if (opts.json) process.stdout.write(`${JSON.stringify({ sources })}\n`);
        else for (const s of sources) process.stdout.write(`${s.source}\t${s.chunks} passages\t${new Date(s.indexedAt).toISOString()}\t${s.title}\n`);
      });
    });
  kb.command('remove')
    .description("remove a document's passages")
    .argument('<source>')
    .action(async (source: string) => {
      await withRuntime(program, {}, async (runtime) => {
        const removed = await runtime.kb.remove(source);
        if (removed === 0) throw new CliError(`no document named ${source} in the knowledge base (see teamllm kb list)`);
        process.stdout.write(`removed ${source} (${removed} passages)\n`);
      });
    });
  kb.command('reindex')
    .description('re-embed the knowledge base for dense retrieval, with an imported encoder (--encoder vN, see teamllm model import) or the trained one (--encoder trained)')
    .option('--encoder <version>', 'an imported encoder version, or "trained" (default: the one in use)')
    .action(async (opts: { encoder?: string }) => {
      await withRuntime(program, {}, async (runtime) => {
        const actor = `console:${runtime.consoleUser}`;
        let choice: string | undefined;
        if (opts.encoder === undefined) choice = runtime.knowledge.embeddings?.info.format === 'teamllm-imported-encoder/1' ? (runtime.knowledge.embeddings.info as { version: string }).version : undefined;
        else choice = opts.encoder === 'trained' ? undefined : opts.encoder;
        const result = await runtime.knowledge.useEncoder(choice).catch((e: Error) => Promise.reject(new CliError(e.message)));
        await runtime.store.audit({ actor, action: 'kb-reindex', detail: { encoder: result.encoder, reembedded: result.reembedded } });
        process.stdout.write(`Retrieval now uses ${choice ?? 'the trained encoder'} (${result.encoder}); ${result.reembedded} passages embedded. Run teamllm eval retrieval to compare.\n`);
      });
    });
  kb.command('search')
    .description('the passages the bot would use for a question')
    .argument('<query...>')
    .option('--json', 'print {results:[{source, title, text, score}]}')
    .option('--k <n>', 'number of results', positiveInt, 5)
    .action(async (words: string[], opts: { json?: boolean; k: number }) => {
      await withRuntime(program, {}, async (runtime) => {
        const results = await runtime.kb.search(words.join(' '), opts.k);
        if (opts.json) process.stdout.write(`${JSON.stringify({ results })}\n`);
        else
          results.forEach((r, i) =>
            process.stdout.write(`[${i + 1}] ${r.score.toFixed(3)}  ${r.title} — ${r.source}\n    ${r.text.replace(/\s+/g, ' ').slice(0, 160)}\n`),
          );
      });
    });
}
