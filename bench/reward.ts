/**
 * `npm run bench -- reward [--facts synthetic|handbook] [--per 8] [--noise 0.05] [--seeds 1,2,3]
 *   [--iters 100] [--batch 4] [--lr 0.005] [--block 128] [--width 32] [--held-out 0.2] [--keep]`
 *
 * The reward model half of the feedback-loop proof: simulated users who like answers quoting a
 * retrieved passage (QUOTES_SOURCE, with `noise`) rate `per` answers to each question, recorded
 * through the store; `/train reward` (the job stage itself) trains a reward model on a tiny
 * character-level GPT (random frozen base + LoRA + head) and measures it on held-out questions.
 * One run per seed (the seed changes the votes and the held-out questions). Prints, per seed,
 * held-out pair accuracy and vote AUC with their 95% intervals, the gate, the AUC against the
 * noise-free taste, the mean score per kind of answer, and wall time; the last stdout line is
 * key=value.
 */
import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { SqliteStore, storeFile } from '../src/core/sqlite-store.ts';
import { ensureBackend } from '../src/model/backend.ts';
import { GPT } from '../src/model/gpt.ts';
import { saveModelFiles } from '../src/model/model-files.ts';
import { ModelRegistry } from '../src/model/registry.ts';
import { CharTokenizer } from '../src/model/tokenizer/index.ts';
import { rewardData } from '../src/training/feedback-datasets.ts';
import { auc } from '../src/training/reward/metrics.ts';
import { handbookFacts, scenarioText, simulateFeedback, syntheticFacts, type Fact } from '../src/training/reward/simulated-feedback.ts';
import { loadRewardModel } from '../src/training/reward/store.ts';
import { QUOTES_SOURCE, SimulatedUsers } from '../src/training/simulated-users.ts';
import { runStage } from '../src/training/stages/reward-stage.ts';
import { stageServices } from '../src/training/jobs/stage-services.ts';

const HANDBOOK = path.resolve(import.meta.dirname, '../examples/handbook');

export async function run(argv: string[]): Promise<void> {
  const { values } = parseArgs({
    args: argv,
    options: {
      facts: { type: 'string', default: 'synthetic' },
      per: { type: 'string', default: '8' },
      noise: { type: 'string', default: '0.05' },
      seeds: { type: 'string', default: '1,2,3' },
      iters: { type: 'string', default: '100' },
      batch: { type: 'string', default: '4' },
      lr: { type: 'string', default: '0.005' },
      block: { type: 'string', default: '128' },
      width: { type: 'string', default: '32' },
      layers: { type: 'string', default: '2' },
      'held-out': { type: 'string', default: '0.2' },
      keep: { type: 'boolean', default: false },
    },
  });
  const backend = await ensureBackend();
  const facts: Fact[] = values.facts === 'handbook' ? await handbookFacts(HANDBOOK, { lang: 'en', maxSentenceChars: 160 }) : syntheticFacts(40);
  const tok = CharTokenizer.fromText(scenarioText(facts), { specialTokens: true });
  const rows: Record<string, number>[] = [];
  for (const seed of values.seeds!.split(',').map(Number)) {
    const home = await fs.mkdtemp(path.join(os.tmpdir(), 'teamllm-bench-reward-'));
    const gpt = GPT.create({ vocabSize: tok.vocabSize, blockSize: Number(values.block), nLayer: Number(values.layers), nHead: 2, nEmbd: Number(values.width), dropout: 0, bias: false }, 5);
    await saveModelFiles(path.join(home, 'base'), gpt, tok);
    gpt.dispose();
    await new ModelRegistry(home).register(path.join(home, 'base'), { source: 'bench', promote: true });
    const store = new SqliteStore(storeFile(home));
    const sim = await simulateFeedback(store, facts, new SimulatedUsers({ seed, noise: Number(values.noise) }), { answersPerQuestion: Number(values.per), distractors: 0, seed: seed + 100 });
    const t0 = performance.now();
    const result = await runStage({
      params: { maxIters: values.iters!, batchSize: values.batch!, learningRate: values.lr!, targets: 'all', heldOut: values['held-out']!, seed: String(seed), name: 'rm', evalInterval: String(Math.max(1, Math.floor(Number(values.iters) / 4))) },
      home,
      ...stageServices(home),
      runDir: path.join(home, 'runs', 'reward'),
      resume: false,
      signal: new AbortController().signal,
      progress: (p) => p.stage === 'evaluate' && process.stderr.write(`seed ${seed} step ${p.step}/${p.totalSteps}: ${p.message ?? ''}\n`),
      log: (l) => process.stderr.write(`${l}\n`),
    });
    const wallSec = (performance.now() - t0) / 1000;
    const m = result.metrics!;
    const row: Record<string, number> = { seed, votes: sim.answers.length, up: sim.up, pairAccuracy: m.pairAccuracy!, pairLo: m.pairAccuracyLo!, pairHi: m.pairAccuracyHi!, heldOutPairs: m.heldOutPairs!, voteAuc: m.voteAuc!, aucLo: m.voteAucLo!, aucHi: m.voteAucHi!, heldOutVotes: m.heldOutVotes!, passed: result.gate!.passed ? 1 : 0, wallSec, secPerStep: m.secPerStep! };
    process.stdout.write(`seed ${seed}: ${result.summary}\n`);
    if (result.gate!.passed) {
      const data = await rewardData(store, { heldOutFraction: Number(values['held-out']), seed });
      const rm = await loadRewardModel(home);
      const votes = data.heldOut.votes;
      const scores = await rm.score(votes);
      row.tasteAuc = auc(scores, votes.map((v) => QUOTES_SOURCE.likes(v))).value;
      const byKind = new Map<string, number[]>();
      votes.forEach((v, i) => byKind.set(v.model.split('@')[1]!, [...(byKind.get(v.model.split('@')[1]!) ?? []), scores[i]!]));
      const kinds = [...byKind].map(([k, s]) => `${k} ${(s.reduce((a, b) => a + b, 0) / s.length).toFixed(2)} (n=${s.length})`);
      // Does it read the passage, or only the style? Quotes of the retrieved passage against quotes
      // of a document that was not retrieved, to the same held-out question: same style, only the
      // relation to the context differs.
      let right = 0;
      let n = 0;
      votes.forEach((a, i) => {
        if (!/^quote/.test(a.model.split('@')[1]!)) return;
        votes.forEach((b, j) => {
          if (b.questionKey !== a.questionKey || b.model.split('@')[1] !== 'wrong-quote') return;
          n++;
          right += scores[i]! > scores[j]! ? 1 : 0;
        });
      });
      row.relationAccuracy = n ? right / n : NaN;
      row.relationPairs = n;
      process.stdout.write(`  mean held-out score by kind of answer: ${kinds.join(', ')}; AUC against the noise-free taste ${row.tasteAuc.toFixed(3)}; quote > wrong-quote on the same question ${(100 * row.relationAccuracy).toFixed(1)}% (n=${n})\n`);
      rm.dispose();
    }
    rows.push(row);
    await store.close();
    if (!values.keep) await fs.rm(home, { recursive: true, force: true });
    else process.stdout.write(`  kept ${home}\n`);
  }
  const mean = (k: string) => rows.reduce((a, r) => a + (r[k] ?? NaN), 0) / rows.length;
  process.stdout.write(`\n| seed | votes (👍) | held-out pairs | pair accuracy (95% CI) | held-out votes | vote AUC (95% CI) | taste AUC | quote > wrong-quote | gate | wall s |\n|---|---|---|---|---|---|---|---|---|---|\n`);
  for (const r of rows) {
    process.stdout.write(
      `| ${r.seed} | ${r.votes} (${r.up}) | ${r.heldOutPairs} | ${(100 * r.pairAccuracy!).toFixed(1)}% (${(100 * r.pairLo!).toFixed(1)}–${(100 * r.pairHi!).toFixed(1)}) | ${r.heldOutVotes} | ${r.voteAuc!.toFixed(3)} (${r.aucLo!.toFixed(3)}–${r.aucHi!.toFixed(3)}) | ${r.tasteAuc?.toFixed(3) ?? '-'} | ${r.relationAccuracy !== undefined ? `${(100 * r.relationAccuracy).toFixed(1)}% (n=${r.relationPairs})` : '-'} | ${r.passed ? 'passed' : 'failed'} | ${r.wallSec!.toFixed(1)} |\n`,
    );
  }
  process.stdout.write(
    `bench=reward backend=${backend} facts=${values.facts} seeds=${rows.length} pair_accuracy=${mean('pairAccuracy').toFixed(3)} vote_auc=${mean('voteAuc').toFixed(3)} taste_auc=${mean('tasteAuc').toFixed(3)} quote_vs_wrong_quote=${mean('relationAccuracy').toFixed(3)} passed=${rows.filter((r) => r.passed).length}/${rows.length} wall_s=${mean('wallSec').toFixed(1)} s_per_step=${mean('secPerStep').toFixed(3)}\n`,
  );
}
