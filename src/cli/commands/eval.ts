import type { Command } from 'commander';
import { evalRetrieval } from '../../app/eval-retrieval.ts';
import { EvalQaError, evalQa } from '../../app/eval-qa.ts';
import { evalAnswers } from '../../app/eval-answers.ts';
import { CliError, positiveInt, withRuntime } from '../shared.ts';
import { loadConfig } from '../../app/config.ts';

/** `teamllm eval retrieval|qa`. */
export function registerEval(program: Command): void {
  const evaluate = program.command('eval').description('evaluations');
  evaluate
    .command('retrieval')
    .description('recall@1, recall@5 and MRR of BM25, dense and hybrid retrieval on a question set')
    .requiredOption('--questions <file>', 'JSONL: {id, question, source, lang?, answer?, evidence?, must_contain?, split?} per line (examples/handbook/questions.jsonl or the dev sets\' format)')
    .requiredOption('--kb <dir>', 'the documents the questions are about')
    .option('--split <name>', 'only the questions of this split (e.g. test)')
    .option('--json', 'print the evaluation as JSON')
    .option('--encoder <version>', 'an imported encoder of $TEAMLLM_HOME (teamllm model import) for the dense side, instead of training one on the folder')
    .action(async (opts: { questions: string; kb: string; split?: string; json?: boolean; encoder?: string }) => {
      const home = opts.encoder ? loadConfig({ file: program.opts<{ config?: string }>().config }).home : undefined;
      const text = await evalRetrieval({ ...opts, ...(home ? { home } : {}), progress: (m) => process.stderr.write(`${m}\n`) }).catch((e: Error) =>
        Promise.reject(opts.encoder ? new CliError(e.message) : e),
      );
      process.stdout.write(`${text}\n`);
    });
  evaluate
    .command('qa')
    .description('answer quality as users see it: the gold fact in the answer, the direct answer (exact match, length), refusals; the served answerer beside the no-model one (--decoding extractive|free: the generating model, EM/F1, beside its base)')
    .requiredOption('--questions <file>', 'JSONL: {question, answer, source?, split?} per line (examples/handbook/questions.jsonl format)')
    .option('--split <name>', 'only the questions of this split (e.g. test, the held-out part)')
    .option('--model <version>', 'the model version to evaluate (default: the serving one)')
    .option('--adapter <name>', 'a LoRA adapter of $TEAMLLM_HOME/adapters, loaded onto the model')
    .option('--k <n>', 'passages retrieved per question (default: as fine-tuned, else 3)', positiveInt)
    .option('--max-tokens <n>', 'answer tokens at most (default: as fine-tuned, else 32)', positiveInt)
    .option('--no-compare', 'do not also evaluate the base of a fine-tuned model')
    .option('--decoding <mode>', 'extractive (answers copied from the retrieved passages) or free (default: as the bot serves it: TEAMLLM_ANSWER_DECODING, else the model\'s meta)')
    .option('--ablation', 'also the parts of the served answerer: rules alone, the selector without the model')
    .option('--json', 'print the scores (and per-question answers) as JSON')
    .action(async (opts: { questions: string; split?: string; model?: string; adapter?: string; k?: number; maxTokens?: number; compare: boolean; decoding?: string; ablation?: boolean; json?: boolean }) => {
      await withRuntime(program, {}, async (runtime) => {
        const served = runtime.config.answerDecoding;
        const progress = (text: string) => process.stderr.isTTY && process.stderr.write(`\r${text}   `);
        if (opts.decoding === undefined && served === 'candidates' && !opts.adapter) {
          await evalAnswers({
            home: runtime.config.home,
            kb: runtime.kb,
            questions: opts.questions,
            ...(opts.split ? { split: opts.split } : {}),
            ...(opts.model ? { model: opts.model } : {}),
            ...(opts.ablation ? { ablation: true } : {}),
            ...(opts.json ? { json: true } : {}),
            out: (text) => process.stdout.write(text),
            progress,
          }).catch((err: unknown) => Promise.reject(err instanceof EvalQaError ? new CliError(err.message) : err));
          if (process.stderr.isTTY) process.stderr.write('\n');
          return;
        }
        await evalQa({
          ...opts,
          // Scores what users get: --decoding, else TEAMLLM_ANSWER_DECODING, else the model's meta.
          ...(opts.decoding === undefined && served !== 'model' && served !== 'candidates' ? { decoding: served } : {}),
          home: runtime.config.home,
          kb: runtime.kb,
          out: (text) => process.stdout.write(text),
          progress: (text) => process.stderr.isTTY && process.stderr.write(`\r${text}   `),
        }).catch((err: unknown) => Promise.reject(err instanceof EvalQaError ? new CliError(err.message) : err));
        if (process.stderr.isTTY) process.stderr.write('\n');
      });
    });
}
