/**
 * `npm run bench -- rlhf [--algos ppo,kto,dpo] [--reward learned|taste] [--per 20] [--noise 0.1]
 *   [--ppo-steps 30] [--offline-steps 30] [--eval-samples 16] [--held-out 0.3] [--split-seed 2] [--seed 1]
 *   [--retrain] [--keep]`
 *
 * The whole feedback loop on a world with a known taste (src/training/rlhf/toy-world.ts):
 *
 * 1. the SFT policy (a tiny chat model that quotes its passage about half the time; the test
 *    fixture, or trained now with --retrain) is registered and serving;
 * 2. it answers every question `per` times (as "regenerate" would) and simulated users who like
 *    answers quoting the passage (QUOTES_SOURCE, with `noise`) rate every answer through the store;
 * 3. `--reward learned`: the reward model is trained by the `reward` job stage on those votes
 *    (held-out accuracy and AUC printed) and PPO optimises it; `--reward taste`: the users' rule;
 * 4. each algorithm runs as the `rlhf` job (runRlhfJob) from the same SFT policy, and reports the
 *    preferred-behaviour rate (answers the users' rule likes) on held-out questions before and
 *    after, the reward, the KL to the SFT policy, QA, the gate and wall time.
 *
 * The last stdout line is key=value.
 */
import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { SqliteStore, storeFile } from '../src/core/sqlite-store.ts';
import { ensureBackend } from '../src/model/backend.ts';
import { saveModelFiles } from '../src/model/model-files.ts';
import { ModelRegistry } from '../src/model/registry.ts';
import { runRlhfJob, type RlhfAlgo, type RlhfJobResult } from '../src/training/rlhf/pipeline.ts';
import { tasteReward } from '../src/training/rlhf/taste-reward.ts';
import { answerAndRecord, loadOrTrainToyPolicy, toyQaQuestions, toyQuestions, toyRetriever, toyTokenizer, trainToySftPolicy } from '../src/training/rlhf/toy-world.ts';
import { QUOTES_SOURCE, SimulatedUsers } from '../src/training/simulated-users.ts';
import { stageServices } from '../src/training/jobs/stage-services.ts';

const FIXTURE = path.resolve(import.meta.dirname, '../tests/rlhf/fixtures/toy-sft');

export async function run(argv: string[]): Promise<void> {
  const { values } = parseArgs({
    args: argv,
    options: {
      algos: { type: 'string', default: 'ppo,kto,dpo' },
      reward: { type: 'string', default: 'learned' },
      per: { type: 'string', default: '20' },
      noise: { type: 'string', default: '0.1' },
      'ppo-steps': { type: 'string', default: '30' },
      'offline-steps': { type: 'string', default: '30' },
      'eval-samples': { type: 'string', default: '16' },
      'held-out': { type: 'string', default: '0.3' },
      /** Seed of the held-out split (2 holds out one phrasing of each fact at 0.3: the other one is trained on). */
      'split-seed': { type: 'string', default: '2' },
      'reward-iters': { type: 'string', default: '150' },
      seed: { type: 'string', default: '1' },
      retrain: { type: 'boolean', default: false },
      keep: { type: 'boolean', default: false },
    },
  });
  const backend = await ensureBackend();
  const seed = Number(values.seed);
  const home = await fs.mkdtemp(path.join(os.tmpdir(), 'teamllm-bench-rlhf-'));
  const say = (l: string) => process.stderr.write(`${l}\n`);
  const t0 = performance.now();

  // 1. The SFT policy, serving.
  const sftDir = path.join(home, 'sft');
  if (values.retrain) {
    const tok = toyTokenizer();
    const model = trainToySftPolicy(tok, toyQuestions(), { steps: 600, seed });
    await saveModelFiles(sftDir, model, tok, { source: 'sft', toy: true });
    model.dispose();
  } else {
    const { model, tokenizer } = await loadOrTrainToyPolicy(FIXTURE);
    await saveModelFiles(sftDir, model, tokenizer, { source: 'sft', toy: true });
    model.dispose();
  }
  const registry = new ModelRegistry(home);
  const v1 = await registry.register(sftDir, { source: 'sft', promote: true });
  const sftSec = (performance.now() - t0) / 1000;

  // 2. Answers and votes, through the store.
  const questions = toyQuestions().map((q) => ({ ...q, split: 'train' as const }));
  const store = new SqliteStore(storeFile(home));
  const { model, tokenizer } = await loadOrTrainToyPolicy(sftDir);
  const answers = await answerAndRecord(store, model, tokenizer, questions, { perQuestion: Number(values.per), seed: seed + 10, modelVersion: v1.version });
  model.dispose();
  const votes = await new SimulatedUsers({ seed, noise: Number(values.noise) }).rate(store, answers);
  await store.close();
  say(`${votes.rated} answers rated by simulated users (${QUOTES_SOURCE.description}, noise ${values.noise}): ${votes.up} 👍, ${votes.down} 👎`);

  // 3. The reward model.
  const row: Record<string, number> = { rated: votes.rated, up: votes.up };
  let rewardLine = 'reward: the users\' rule itself (taste)';
  if (values.reward === 'learned') {
    const { runStage } = await import('../src/training/stages/reward-stage.ts');
    const t = performance.now();
    const r = await runStage({
      params: { maxIters: values['reward-iters']!, batchSize: '8', learningRate: '0.005', targets: 'all', heldOut: values['held-out']!, seed: values['split-seed']!, name: 'rm' },
      home,
      ...stageServices(home),
      runDir: path.join(home, 'runs', 'reward'),
      resume: false,
      signal: new AbortController().signal,
      progress: () => {},
      log: say,
    });
    const m = r.metrics ?? {};
    row.rmPairAccuracy = m.pairAccuracy ?? NaN;
    row.rmVoteAuc = m.voteAuc ?? NaN;
    row.rmSec = (performance.now() - t) / 1000;
    rewardLine = `reward model: ${r.summary.split('\n')[0]} (${row.rmSec.toFixed(1)} s)`;
    if (!r.gate?.passed) say(`the reward model did not pass its gate: ${r.gate?.reasons.join('; ')} — PPO will refuse to run`);
  }
  process.stdout.write(`${rewardLine}\n`);

  // 4. Each algorithm from the same SFT policy.
  const questionsFile = path.join(home, 'questions.jsonl');
  await fs.writeFile(questionsFile, toyQaQuestions(toyQuestions()).map((q) => JSON.stringify(q)).join('\n'));
  const retriever = toyRetriever(questions);
  const results: { algo: RlhfAlgo; r: RlhfJobResult }[] = [];
  for (const algo of values.algos!.split(',').map((a) => a.trim()) as RlhfAlgo[]) {
    const params = {
      algo,
      base: v1.version,
      promote: 'never' as const,
      questions: questionsFile,
      heldOutFraction: Number(values['held-out']),
      heldOutSeed: Number(values['split-seed']),
      evalSamples: Number(values['eval-samples']),
      maxTokens: 40,
      seed,
      ...(algo === 'ppo'
        ? { steps: Number(values['ppo-steps']), learningRate: 1e-3, promptsPerStep: 4, samplesPerPrompt: 4, ppoEpochs: 2, initKlCoef: 0.2, targetKl: 1 }
        : { steps: Number(values['offline-steps']), learningRate: 1e-3, beta: 0.5, batchSize: 8 }),
    };
    say(`\n== ${algo.toUpperCase()} ==`);
    const r = await runRlhfJob(params, {
      home,
      ...stageServices(home),
      runDir: path.join(home, 'runs', algo),
      retriever,
      taste: QUOTES_SOURCE,
      log: say,
      ...(values.reward === 'taste' ? { rewardModel: tasteReward(QUOTES_SOURCE) } : {}),
    });
    results.push({ algo, r });
  }
  const pct = (v: number | undefined) => (v === undefined || !Number.isFinite(v) ? '-' : `${(100 * v).toFixed(1)}%`);
  process.stdout.write(`\n| algo | preferred before → after | reward before → after | KL | entropy before → after | QA contains-gold before → after | gate | steps | wall s |\n|---|---|---|---|---|---|---|---|---|\n`);
  for (const { algo, r } of results) {
    process.stdout.write(
      `| ${algo} | ${pct(r.before.policy?.preferredRate)} → ${pct(r.after.policy?.preferredRate)} (n=${r.after.policy?.n}) | ${r.before.reward.toFixed(3)} → ${r.after.reward.toFixed(3)} (${r.before.rewardKind}) | ${r.after.kl.toFixed(3)} | ${r.before.entropy.toFixed(3)} → ${r.after.entropy.toFixed(3)} | ${pct(r.before.qa?.containsGold)} → ${pct(r.after.qa?.containsGold)} | ${r.gate.passed ? 'passed' : 'kept back'} | ${r.steps} | ${r.wallSec.toFixed(1)} |\n`,
    );
    row[`${algo}_pref_before`] = r.before.policy?.preferredRate ?? NaN;
    row[`${algo}_pref_after`] = r.after.policy?.preferredRate ?? NaN;
    row[`${algo}_kl`] = r.after.kl;
    row[`${algo}_wall_s`] = r.wallSec;
    row[`${algo}_gate`] = r.gate.passed ? 1 : 0;
  }
  for (const { algo, r } of results) process.stdout.write(`${algo}: ${r.files.chart}\n`);
  if (values.keep) process.stdout.write(`kept ${home}\n`);
  else await fs.rm(home, { recursive: true, force: true });
  const kv = Object.entries(row).map(([k, v]) => `${k}=${Number.isInteger(v) ? v : v.toFixed(3)}`);
  process.stdout.write(`bench=rlhf backend=${backend} reward=${values.reward} sft_s=${sftSec.toFixed(1)} ${kv.join(' ')}\n`);
}
