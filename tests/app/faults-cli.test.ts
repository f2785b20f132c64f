/**
 * Fault injection through the `teamllm` command (issue 23): a start that fails ends the process
 * and its Chroma child with one clear line; `teamllm model verify` names a damaged file.
 */
import { execFile, execFileSync, spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, truncateSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, describe, expect, it } from 'vitest';
import { saveModelFiles } from '../../src/model/model-files.ts';
import { ModelRegistry } from '../../src/model/registry.ts';
import { CharTokenizer } from '../../src/model/tokenizer/index.ts';
import { LocalEmbeddings, LocalKnowledgeBase } from '../../src/rag/index.ts';
import { trainEncoder } from '../../src/rag/encoder-training.ts';
import { tinyModel, useBackend } from '../model/helpers.ts';

const BIN = join(import.meta.dirname, '../../bin/teamllm.js');
const run = promisify(execFile);
const homes: string[] = [];
afterAll(() => {
  for (const h of homes) rmSync(h, { recursive: true, force: true });
});

function home(): string {
  const dir = mkdtempSync(join(tmpdir(), 'teamllm-faults-cli-'));
  homes.push(dir);
  return dir;
}

/** Processes whose command line mentions `text` (the Chroma child names its data folder). */
function processesMentioning(text: string): string[] {
  return execFileSync('ps', ['-eo', 'pid=,args='], { encoding: 'utf8' })
    .split('\n')
    .filter((line) => line.includes(text) && !line.includes('ps -eo'));
}

describe('teamllm serve', () => {
  it('exits non-zero with one clear line, and stops its Chroma child, when the start fails after Chroma started', async () => {
    const dir = home();
    // An encoder, so the bundled Chroma starts at open...
    const kb = new LocalKnowledgeBase(join(dir, 'kb', 'local.db'));
    mkdirSync(join(dir, 'docs'));
    writeFileSync(join(dir, 'docs', 'leave.md'), '# Leave\n\n## Annual leave\n\nFull-time staff receive 25 vacation days per year.\n\n## Sick leave\n\nCall your manager.');
    await kb.addPaths([join(dir, 'docs')]);
    const { encoder, report } = await trainEncoder(kb.passages(), { config: { buckets: 1024, dim: 8, members: 1 }, steps: 5, batchSize: 4 });
    LocalEmbeddings.fromTraining(encoder, report, { sources: 1, passages: kb.chunkCount }).save(join(dir, 'embeddings'));
    kb.close();
    // ...and then a model registry that cannot be read stops the start.
    mkdirSync(join(dir, 'models'));
    writeFileSync(join(dir, 'models', 'registry.json'), '{"serving": "v1", "versi');

    const child = spawn(process.execPath, [BIN, 'serve', '--port', '0'], {
      env: { ...process.env, TEAMLLM_HOME: dir, TEAMLLM_QUICKSTART: 'off', TEAMLLM_SAMPLE_KB: 'false', TEAMLLM_LOG_LEVEL: 'silent' },
      cwd: dir,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stderr = '';
    child.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
    const code = await new Promise<number | null>((resolve) => child.once('exit', (c) => resolve(c)));
    expect(code).toBe(1);
    const lines = stderr.trim().split('\n');
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatch(/^teamllm serve: could not start: the model registry .*registry\.json cannot be read/);
    expect(processesMentioning(join(dir, 'chroma'))).toEqual([]);
  }, 120_000);
});

describe('teamllm model verify', () => {
  it('checks every version against its recorded hashes and names a truncated file', async () => {
    await useBackend('cpu');
    const dir = home();
    const tokenizer = CharTokenizer.fromText('abcdefghij');
    const modelDir = join(dir, 'made');
    await saveModelFiles(modelDir, tinyModel({ vocabSize: tokenizer.vocabSize, blockSize: 8, nLayer: 1, nHead: 2, nEmbd: 8, dropout: 0, bias: true }), tokenizer);
    const registry = new ModelRegistry(dir);
    await registry.register(modelDir);
    await registry.register(modelDir);
    truncateSync(join(registry.dir('v2'), 'model.safetensors'), 50);
    const env = { ...process.env, TEAMLLM_HOME: dir, TEAMLLM_QUICKSTART: 'off', TEAMLLM_SAMPLE_KB: 'false' };
    const all = await run(process.execPath, [BIN, 'model', 'verify'], { env, cwd: dir }).then(
      (r) => ({ code: 0, stdout: r.stdout }),
      (e: { code: number; stdout: string }) => ({ code: e.code, stdout: e.stdout }),
    );
    expect(all.code).toBe(1);
    expect(all.stdout).toMatch(/✓ v1: files match the sha256 recorded at registration/);
    expect(all.stdout).toMatch(/✗ model version v2 cannot be served: .*v2\/model\.safetensors is 50 bytes.*teamllm model rollback/);
    const one = await run(process.execPath, [BIN, 'model', 'verify', 'v1'], { env, cwd: dir });
    expect(one.stdout.trim()).toBe('✓ v1: files match the sha256 recorded at registration');
  }, 60_000);
});
