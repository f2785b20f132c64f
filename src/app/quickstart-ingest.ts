/**
 * The quickstart's last stage: the documents into the knowledge base, the retrieval encoder, the
 * vectors into Chroma, and the serving model's answer selector.
 */
import { existsSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { writeJsonAtomic } from '../model/files.ts';
import { LoadedModel } from '../model/loaded-model.ts';
import { answerSettings } from '../model/answer-settings.ts';
import { openKnowledgeBase } from '../rag/index.ts';
import type { LocalKnowledgeBase } from '../rag/local-knowledge-base.ts';
import { ModelCandidateScorer, SELECTOR_FILE } from '../rag/model-candidate-scorer.ts';
import { generateQa, readDocuments } from '../training/sft/qa-generator.ts';
import { trainAnswerSelector } from '../training/sft/selector-data.ts';
import { readInputDocuments, sampleInputs } from './quickstart-inputs.ts';
import type { QuickstartRun } from './quickstart-run.ts';
import { loadSampleKnowledgeBase, SAMPLE_KB_DIR } from './sample-kb.ts';

/** 4. Ingestion, for the model version that will serve. */
export async function ingestStage(run: QuickstartRun, serveVersion: string): Promise<void> {
  const { config, logger, recipe, inputs, registry, reporter, signal } = run;
  const home = config.home;
  const embeddingsReady = existsSync(join(home, 'embeddings'));
  const kb = await openKnowledgeBase({ home, ...(config.chromaUrl ? { chromaUrl: config.chromaUrl } : {}), logger });
  try {
    // The sample handbook (once per data folder), or exactly the company's documents: never both.
    let changed = false;
    let line = '';
    if (inputs.sample) changed = (config.sampleKnowledgeBase ? await loadSampleKnowledgeBase(kb.kb, home, logger) : undefined) !== undefined;
    else {
      const report = await kb.kb.addPaths(inputs.docs, { baseDir: inputs.docsBase });
      const removed = await removeSampleDocuments(kb.kb, home, new Set([...report.added, ...report.updated, ...report.unchanged]));
      changed = report.added.length + report.updated.length + removed.length > 0;
      line = `${report.added.length} added, ${report.updated.length} updated, ${report.unchanged.length} unchanged${report.failed.length ? `, ${report.failed.length} unreadable (${report.failed.map((f) => f.source).join(', ')})` : ''}${removed.length ? `, ${removed.length} sample documents removed` : ''}: `;
    }
    // A changed knowledge base gets an encoder trained on it (the sample's is trained once).
    const needEncoder = recipe.embeddings && (!embeddingsReady || (!inputs.sample && changed));
    reporter.stage('ingest', !changed && !needEncoder);
    line += `${(await kb.kb.list()).length} documents in the knowledge base`;
    if (needEncoder) {
      const trained = await kb.trainEmbeddings({
        ...(recipe.embeddingSteps ? { training: { steps: recipe.embeddingSteps } } : {}),
        ...(signal ? { signal } : {}),
        onProgress: (p) => reporter.progress({ stage: 'encoder', step: p.step, totalSteps: p.steps, loss: p.loss }),
      });
      line += `; encoder ${trained.info.id} trained, ${trained.reembedded} passages embedded into ${kb.chroma?.bundled === false ? 'Chroma at CHROMA_URL' : 'the bundled Chroma'}`;
    }
    // The answer selector of the model that will serve, trained on questions generated from these
    // documents through this knowledge base (its encoder included): how much the model's score
    // counts against the rules is learned, not guessed (src/rag/answer-selector.ts).
    const selectorFile = join(registry.dir(serveVersion), SELECTOR_FILE);
    if (recipe.selectorQuestions > 0 && (changed || needEncoder || !existsSync(selectorFile))) {
      const questions = generateQa(await readInputDocuments(inputs, (line) => reporter.log(line)), { max: recipe.selectorQuestions, seed: recipe.seed + 2 });
      const model = await LoadedModel.load(registry.dir(serveVersion), serveVersion);
      try {
        const selector = await trainAnswerSelector({
          kb: kb.kb,
          scorer: new ModelCandidateScorer(model, answerSettings(model)),
          questions,
          ...(signal ? { signal } : {}),
          onProgress: (step, totalSteps) => reporter.progress({ stage: 'answer selector', step, totalSteps }),
        });
        await writeJsonAtomic(selectorFile, selector);
        // Its hash joins the version's (a selector changed behind the registry's back is a damaged version).
        await registry.recordFiles(serveVersion, [SELECTOR_FILE]);
        const s = selector.trained;
        if (s) line += `; answer selector: ${(100 * s.defaultHeldOutAccuracy).toFixed(1)}% → ${(100 * s.heldOutAccuracy).toFixed(1)}% right on ${s.heldOut} held-out generated questions (model weight ${selector.weights.model.toFixed(2)})`;
      } finally {
        model.dispose();
      }
    }
    reporter.done('ingest', line);
  } finally {
    await kb.close();
  }
}

/**
 * A company's own documents replace the sample handbook: the sample's documents that a data folder
 * got at its first start (TEAMLLM_SAMPLE_KB) are removed, unless one of the new documents has the same
 * name; and the sample is never loaded into it again. Returns the sources removed.
 */
async function removeSampleDocuments(kb: LocalKnowledgeBase, home: string, keep: Set<string>): Promise<string[]> {
  const marker = join(home, 'kb', 'sample-loaded');
  const removed: string[] = [];
  if (existsSync(marker) && existsSync(SAMPLE_KB_DIR)) {
    const sample = new Set((await readDocuments(sampleInputs().docs, SAMPLE_KB_DIR)).map((d) => d.source));
    for (const { source } of await kb.list()) {
      if (sample.has(source) && !keep.has(source)) {
        await kb.remove(source);
        removed.push(source);
      }
    }
  }
  writeFileSync(marker, `${new Date().toISOString()} (not loaded: the quickstart trained on a company's own documents)\n`);
  return removed;
}

