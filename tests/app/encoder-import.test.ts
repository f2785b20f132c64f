/**
 * `teamllm model import` and `teamllm kb reindex` end to end, through the real CLI: a tiny
 * random-weight BERT (HF folder and GGUF) is imported, refused imports copy nothing, and the
 * knowledge base's dense side (bundled Chroma) uses the imported encoder, hybrid with BM25.
 */
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { teamllm } from './import-cli.ts';
import { tinyBert, writeHfFolder, writeTinyGguf } from '../model/import/tiny-bert.ts';
import { tinyXlmr, writeTinyXlmrGguf } from '../model/import/tiny-xlmr.ts';


describe('teamllm model import + kb reindex', () => {
  it('imports an encoder folder and a GGUF file, refuses what it cannot run before copying, and retrieves with the imported encoder', { timeout: 180_000 }, async () => {
    const home = mkdtempSync(join(tmpdir(), 'teamllm-import-'));
    const model = tinyBert({ pooling: 'mean' });
    const folder = join(home, 'downloads', 'tiny-bge');
    writeHfFolder(folder, model, 'BF16', { licence: 'mit' });
    const gguf = join(home, 'downloads', 'tiny-bge.gguf');
    writeTinyGguf(gguf, model, 'Q8_0');

    // Refused: a model of an architecture teamllm does not run, and a folder whose weights do not match its config. Nothing is copied.
    const gpt2 = join(home, 'downloads', 'gpt2');
    mkdirSync(gpt2, { recursive: true });
    writeFileSync(join(gpt2, 'config.json'), JSON.stringify({ architectures: ['GPT2LMHeadModel'] }));
    const refused = await teamllm(home, ['model', 'import', gpt2]);
    expect(refused.code).toBe(1);
    expect(refused.stderr).toContain('GPT2LMHeadModel');
    expect(refused.stderr).toContain('LlamaForCausalLM');
    expect(refused.stderr).toContain('BertModel and XLMRobertaModel');
    const broken = join(home, 'downloads', 'broken');
    writeHfFolder(broken, tinyBert({ hidden: 32 }));
    writeFileSync(join(broken, 'config.json'), readFileSync(join(folder, 'config.json')));
    const mismatch = await teamllm(home, ['model', 'import', broken]);
    expect(mismatch.code).toBe(1);
    expect(mismatch.stderr).toMatch(/does not match its config: embeddings\.word_embeddings\.weight is \[\d+, 32\], the config implies \[\d+, 64\]/);
    expect(existsSync(join(home, 'models')) ? readdirSync(join(home, 'models')).filter((f) => /^v\d+$/.test(f)) : []).toEqual([]);

    // An encoder is used as it was stored: --dtype is refused, naming why.
    const withDtype = await teamllm(home, ['model', 'import', folder, '--dtype', 'int8']);
    expect(withDtype.code).toBe(1);
    expect(withDtype.stderr).toContain('--dtype is for chat models');
    const imported = await teamllm(home, ['model', 'import', folder, '--name', 'tiny-bge']);
    expect(imported.code, imported.stderr).toBe(0);
    expect(imported.stdout).toContain('Imported v1 "tiny-bge": BertModel');
    expect(imported.stdout).toContain('BF16');
    expect(imported.stdout).toContain('Licence: mit');
    expect(imported.stdout).toContain('mean pooling, normalised');
    const fromGguf = await teamllm(home, ['model', 'import', gguf]);
    expect(fromGguf.code, fromGguf.stderr).toBe(0);
    expect(fromGguf.stdout).toMatch(/Imported v2: BertModel, [\d,]+ parameters, F32\+Q8_0/);

    const registry = JSON.parse(readFileSync(join(home, 'models', 'registry.json'), 'utf8')) as { versions: Record<string, Record<string, unknown>> };
    expect(registry.versions.v1).toMatchObject({ kind: 'encoder', source: 'import', architecture: 'BertModel', dtype: 'BF16', licence: 'mit', name: 'tiny-bge', origin: folder });
    expect(Object.keys(registry.versions.v1!.files as object)).toEqual(expect.arrayContaining(['config.json', 'model.safetensors', 'tokenizer.json', 'modules.json', '1_Pooling/config.json', 'README.md', 'encoder.json']));
    const list = await teamllm(home, ['model', 'list']);
    expect(list.stdout).toContain('v1 "tiny-bge" — imported encoder BertModel');
    const promote = await teamllm(home, ['model', 'promote', 'v1']);
    expect(promote.code).toBe(1);
    expect(promote.stderr).toContain('v1 is an imported encoder: it serves retrieval, not answers');
    expect((await teamllm(home, ['model', 'verify', 'v2'])).stdout).toContain('✓ v2');

    // The knowledge base: BM25 only, then hybrid with the imported encoder.
    const docs = join(home, 'docs');
    mkdirSync(docs);
    writeFileSync(join(docs, 'leave.md'), '# Leave\n\nHow many days of annual leave do I get? Every employee gets 25 holiday days per year.');
    writeFileSync(join(docs, 'travel.md'), '# Travel\n\nA travel expense report needs the approval of your manager.');
    expect((await teamllm(home, ['kb', 'add', docs])).code).toBe(0);
    const reindex = await teamllm(home, ['kb', 'reindex', '--encoder', 'v1']);
    expect(reindex.code, reindex.stderr).toBe(0);
    expect(reindex.stdout).toMatch(/Retrieval now uses v1 \(v1-[0-9a-f]{12}\); 2 passages embedded/);
    expect(JSON.parse(readFileSync(join(home, 'embeddings', 'selected.json'), 'utf8'))).toMatchObject({ encoder: 'v1' });
    const ask = await teamllm(home, ['ask', '--json', 'manager approval for travel expenses']);
    expect(ask.code, ask.stderr).toBe(0);
    const answer = JSON.parse(ask.stdout) as { model: string; sources: { source: string }[] };
    expect(answer.model).toContain('hybrid BM25 + tiny-bge (BertModel)');
    expect(answer.sources[0]!.source).toBe('travel.md');
    // Another encoder re-embeds; a language model or an unknown version is refused.
    expect((await teamllm(home, ['kb', 'reindex', '--encoder', 'v2'])).stdout).toContain('2 passages embedded');
    const unknown = await teamllm(home, ['kb', 'reindex', '--encoder', 'v9']);
    expect(unknown.code).toBe(1);
    expect(unknown.stderr).toContain('no model version v9');

    // eval retrieval with the imported encoder as the dense side.
    const questions = join(home, 'questions.jsonl');
    writeFileSync(questions, [{ id: 'q1', question: 'how many holiday days per year', source: 'leave.md' }, { id: 'q2', question: 'who approves a travel expense report', source: 'travel.md' }].map((q) => JSON.stringify(q)).join('\n'));
    const evaluated = await teamllm(home, ['eval', 'retrieval', '--questions', questions, '--kb', docs, '--encoder', 'v1', '--json']);
    expect(evaluated.code, evaluated.stderr).toBe(0);
    const evaluation = JSON.parse(evaluated.stdout) as { encoder: { id: string }; rows: { mode: string }[] };
    expect(evaluation.encoder.id).toMatch(/^v1-/);
    expect(evaluation.rows.map((r) => r.mode)).toEqual(expect.arrayContaining(['bm25', 'dense', 'hybrid']));
  });

  it('imports an XLM-RoBERTa GGUF (SentencePiece vocabulary) as an encoder version and retrieves with it', { timeout: 120_000 }, async () => {
    const home = mkdtempSync(join(tmpdir(), 'teamllm-import-xlmr-'));
    const gguf = join(home, 'downloads', 'tiny-e5-q8_0.gguf');
    writeTinyXlmrGguf(gguf, tinyXlmr({ pooling: 'mean' }), 'Q8_0');
    const imported = await teamllm(home, ['model', 'import', gguf, '--name', 'tiny-e5']);
    expect(imported.code, imported.stderr).toBe(0);
    expect(imported.stdout).toMatch(/Imported v1 "tiny-e5": XLMRobertaModel, [\d,]+ parameters, F32\+Q8_0/);
    expect(imported.stdout).toContain('mean pooling, normalised');
    const registry = JSON.parse(readFileSync(join(home, 'models', 'registry.json'), 'utf8')) as { versions: Record<string, Record<string, unknown>> };
    expect(registry.versions.v1).toMatchObject({ kind: 'encoder', source: 'import', architecture: 'XLMRobertaModel', dtype: 'F32+Q8_0', name: 'tiny-e5', origin: gguf });
    expect((await teamllm(home, ['model', 'verify', 'v1'])).stdout).toContain('✓ v1');

    const docs = join(home, 'docs');
    mkdirSync(docs);
    writeFileSync(join(docs, 'leave.md'), '# Leave\n\nHow many days of annual leave do I get? 中国 假期 年');
    writeFileSync(join(docs, 'travel.md'), '# Travel\n\nCan my manager approve a travel expense report?');
    expect((await teamllm(home, ['kb', 'add', docs])).code).toBe(0);
    const reindex = await teamllm(home, ['kb', 'reindex', '--encoder', 'v1']);
    expect(reindex.code, reindex.stderr).toBe(0);
    expect(reindex.stdout).toMatch(/Retrieval now uses v1 \(v1-[0-9a-f]{12}\); 2 passages embedded/);
    const ask = await teamllm(home, ['ask', '--json', 'travel expense report']);
    expect(ask.code, ask.stderr).toBe(0);
    const answer = JSON.parse(ask.stdout) as { model: string; sources: { source: string }[] };
    expect(answer.model).toContain('hybrid BM25 + tiny-e5 (XLMRobertaModel)');
    expect(answer.sources.map((r) => r.source)).toContain('travel.md');
  });
});
