/** The import readers on their own: GGUF, safetensors (16-bit, shards), configs, pooling, tokenizers. */
import { mkdtempSync, mkdirSync, rmSync, writeFileSync, readFileSync, renameSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { encodeGguf, GgufFile } from '../../../src/model/import/gguf.ts';
import { bf16ToFloat, floatToBf16, floatToHalf, halfToFloat } from '../../../src/model/import/dtypes.ts';
import { decodeSafetensors, encodeSafetensors, readSafetensorsFolder, readSafetensorsTensor } from '../../../src/model/safetensors.ts';
import { inspectEncoder, inspectHfEncoder, loadGgufEncoder, loadHfEncoder } from '../../../src/model/import/encoder-checkpoint.ts';
import { IMPORTED_EMBEDDINGS_FORMAT, ImportedEmbeddings } from '../../../src/rag/imported-embeddings.ts';
import { encoderConfigFromHf, expectedTensors } from '../../../src/model/import/encoder-config.ts';
import { ImportError } from '../../../src/model/import/hf-folder.ts';
import { EncoderTokenizer } from '../../../src/model/import/encoder-tokenizer.ts';
import { BertEncoder } from '../../../src/model/import/bert.ts';
import { ensureDiskSpace } from '../../../src/model/registry.ts';
import { hfConfigJson, tinyBert, writeHfFolder, writeTinyGguf } from './tiny-bert.ts';
import { tinyXlmr, writeTinyXlmrGguf } from './tiny-xlmr.ts';

let dir: string;
beforeAll(() => {
  dir = mkdtempSync(path.join(tmpdir(), 'teamllm-readers-'));
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('16-bit floats', () => {
  it('round to nearest even and read back exactly', () => {
    expect(halfToFloat(floatToHalf(1))).toBe(1);
    expect(halfToFloat(floatToHalf(65504))).toBe(65504);
    expect(halfToFloat(floatToHalf(1e6))).toBe(Infinity);
    expect(halfToFloat(floatToHalf(2 ** -24))).toBe(2 ** -24); // smallest subnormal
    expect(halfToFloat(floatToHalf(1 + 2 ** -11))).toBe(1); // a tie goes to even
    expect(halfToFloat(floatToHalf(1 + 3 * 2 ** -11))).toBe(1 + 2 ** -9);
    expect(bf16ToFloat(floatToBf16(3.140625))).toBe(3.140625);
    expect(bf16ToFloat(floatToBf16(1 + 2 ** -8))).toBe(1); // tie to even
    expect(Number.isNaN(bf16ToFloat(floatToBf16(Number.NaN)))).toBe(true);
  });
});

describe('GGUF', () => {
  it('writes and reads back metadata of every type and F32/F16/BF16/Q8_0 tensors', () => {
    const values = Float32Array.from({ length: 64 }, (_, i) => Math.sin(i) * 3);
    const bytes = encodeGguf(
      [
        ['general.architecture', { type: 'string', value: 'bert' }],
        ['a.u32', { type: 'u32', value: 7 }],
        ['a.f32', { type: 'f32', value: 0.5 }],
        ['a.bool', { type: 'bool', value: true }],
        ['a.i64', { type: 'i64', value: -3 }],
        ['a.strings', { type: 'array', of: 'string', value: ['x', '▁y', '中'] }],
        ['a.ints', { type: 'array', of: 'i32', value: [1, -2, 3] }],
      ],
      (['F32', 'F16', 'BF16', 'Q8_0'] as const).map((type) => ({ name: `t.${type}`, shape: [2, 32], data: values, type })),
    );
    const file = path.join(dir, 'all.gguf');
    writeFileSync(file, bytes);
    const g = GgufFile.open(file);
    try {
      expect(g.version).toBe(3);
      expect(g.get('general.architecture')).toBe('bert');
      expect(g.get('a.u32')).toBe(7);
      expect(g.get('a.f32')).toBe(0.5);
      expect(g.get('a.bool')).toBe(true);
      expect(g.get('a.i64')).toBe(-3);
      expect(g.get('a.strings')).toEqual(['x', '▁y', '中']);
      expect(g.get('a.ints')).toEqual([1, -2, 3]);
      expect(g.tensors.get('t.F32')).toMatchObject({ ne: [32, 2], shape: [2, 32], type: 'F32' });
      expect([...g.read('t.F32')]).toEqual([...values]);
      for (const [type, tol] of [['F16', 2e-3], ['BF16', 2e-2], ['Q8_0', 3 / 127]] as const) {
        const back = g.read(`t.${type}`);
        for (let i = 0; i < values.length; i++) expect(Math.abs(back[i]! - values[i]!), `${type}[${i}]`).toBeLessThanOrEqual(tol * 1.01);
      }
    } finally {
      g.close();
    }
  });

  it('refuses a file that is not GGUF, and a truncated one', () => {
    const notGguf = path.join(dir, 'x.gguf');
    writeFileSync(notGguf, 'hello world, this is not a model file at all');
    expect(() => GgufFile.open(notGguf)).toThrow(/not a GGUF file/);
    const good = path.join(dir, 'trunc.gguf');
    writeTinyGguf(good, tinyBert());
    const bytes = readFileSync(good);
    writeFileSync(good, bytes.subarray(0, bytes.length - 100));
    expect(() => inspectEncoder(good)).toThrow(/past the end of the file/);
  });
});

describe('safetensors', () => {
  it('stores F32 data as F16 or BF16 and reads it back through the header reader', () => {
    const data = Float32Array.from([1, -2.5, 0.1, 3e-5]);
    for (const stored of ['F16', 'BF16'] as const) {
      const bytes = encodeSafetensors(new Map([['w', { dtype: 'F32', shape: [2, 2], data, stored }]]));
      const back = decodeSafetensors(bytes).tensors.get('w')!;
      expect(back.stored).toBe(stored);
      expect(back.data[0]).toBe(1);
      expect(Math.abs(back.data[2]! - 0.1)).toBeLessThan(stored === 'F16' ? 1e-4 : 1e-3);
    }
  });

  it('reads a sharded folder through model.safetensors.index.json', () => {
    const model = tinyBert();
    const hf = path.join(dir, 'sharded');
    writeHfFolder(hf, model);
    // Re-write the weights as two shards with an index, as large checkpoints come.
    const all = decodeSafetensors(readFileSync(path.join(hf, 'model.safetensors'))).tensors;
    rmSync(path.join(hf, 'model.safetensors'));
    const names = [...all.keys()];
    const half = Math.ceil(names.length / 2);
    const weightMap: Record<string, string> = {};
    for (const [i, part] of [names.slice(0, half), names.slice(half)].entries()) {
      const file = `model-0000${i + 1}-of-00002.safetensors`;
      writeFileSync(path.join(hf, file), encodeSafetensors(new Map(part.map((n) => [n, all.get(n)!]))));
      for (const n of part) weightMap[n] = file;
    }
    writeFileSync(path.join(hf, 'model.safetensors.index.json'), JSON.stringify({ metadata: {}, weight_map: weightMap }));
    const entries = readSafetensorsFolder(hf);
    expect(new Set(entries.map((e) => path.basename(e.file))).size).toBe(2);
    const e = entries.find((x) => x.name === 'bert.embeddings.word_embeddings.weight')!;
    expect([...readSafetensorsTensor(e)]).toEqual([...model.weights.get('embeddings.word_embeddings.weight')!]);
    const d = inspectHfEncoder(hf);
    expect(d.files.map((f) => f.file)).toEqual(expect.arrayContaining(['model-00001-of-00002.safetensors', 'model-00002-of-00002.safetensors', 'model.safetensors.index.json']));
    // A shard the index names but the folder lacks is refused.
    renameSync(path.join(hf, 'model-00002-of-00002.safetensors'), path.join(hf, 'moved.safetensors'));
    expect(() => inspectHfEncoder(hf)).toThrow(/names the shard model-00002-of-00002.safetensors, which is missing/);
  });
});

describe('Hugging Face encoder folders', () => {
  it('refuse another architecture before reading anything else, naming what is supported', () => {
    const hf = path.join(dir, 'llama');
    mkdirSync(hf, { recursive: true });
    writeFileSync(path.join(hf, 'config.json'), JSON.stringify({ architectures: ['LlamaForCausalLM'], hidden_size: 8 }));
    expect(() => inspectHfEncoder(hf)).toThrow(ImportError);
    expect(() => inspectHfEncoder(hf)).toThrow(/LlamaForCausalLM.*BertModel and XLMRobertaModel/);
  });

  it('refuse missing files and shapes that do not match the config, naming them', () => {
    const model = tinyBert();
    const hf = path.join(dir, 'bad-shape');
    writeHfFolder(hf, model);
    const config = { ...hfConfigJson(model.config), intermediate_size: 100 };
    writeFileSync(path.join(hf, 'config.json'), JSON.stringify(config));
    expect(() => inspectHfEncoder(hf)).toThrow(/encoder\.layer\.0\.intermediate\.dense\.weight is \[128, 64\], the config implies \[100, 64\]/);
    const noTok = path.join(dir, 'no-tokenizer');
    writeHfFolder(noTok, model);
    rmSync(path.join(noTok, 'tokenizer.json'));
    expect(() => inspectHfEncoder(noTok)).toThrow(/missing tokenizer\.json/);
    expect(() => encoderConfigFromHf({ ...hfConfigJson(model.config), hidden_act: 'relu' })).toThrow(/hidden_act "relu"/);
  });

  it('are refused when the disk has no room for them, before anything is copied', async () => {
    await expect(ensureDiskSpace(path.join(dir, 'not', 'yet', 'made'), 2 ** 60)).rejects.toThrow(/not enough disk space under .*nothing was copied/);
    await expect(ensureDiskSpace(dir, 1024)).resolves.toBeUndefined();
  });

  it('read the query and passage prompts of the sentence-transformers config, and use them when embedding', async () => {
    const model = tinyBert({ pooling: 'mean' });
    const hf = path.join(dir, 'prompts');
    writeHfFolder(hf, model);
    writeFileSync(path.join(hf, 'config_sentence_transformers.json'), JSON.stringify({ prompts: { query: 'query: ', passage: 'passage: ' }, default_prompt_name: null }));
    const d = inspectHfEncoder(hf);
    expect(d.prompts).toEqual({ query: 'query: ', document: 'passage: ' });
    expect(d.files.map((f) => f.file)).toContain('config_sentence_transformers.json');
    // Without the file: no prompts.
    const plain = path.join(dir, 'no-prompts');
    writeHfFolder(plain, model);
    expect(inspectHfEncoder(plain).prompts).toEqual({});

    const { encoder, tokenizer } = loadHfEncoder(hf);
    const info = { format: IMPORTED_EMBEDDINGS_FORMAT, id: 't', version: 'v1', architecture: 'BertModel', dimensions: model.config.hidden, pooling: d.pooling, licence: 'mit' } as const;
    const prompted = new ImportedEmbeddings(encoder, tokenizer, info, undefined, d.prompts);
    const bare = new ImportedEmbeddings(encoder, tokenizer, info);
    const same = (a: number[], b: number[]) => Math.max(...a.map((x, i) => Math.abs(x - b[i]!)));
    expect(same(await prompted.embedQuery('annual leave'), bare.embedText('query: annual leave'))).toBe(0);
    expect(same(prompted.embedQueryText('annual leave'), bare.embedText('query: annual leave'))).toBe(0);
    expect(same(prompted.embedText('25 days of leave'), bare.embedText('passage: 25 days of leave'))).toBe(0);
    expect(same((await prompted.embedDocuments(['25 days of leave']))[0]!, bare.embedText('passage: 25 days of leave'))).toBe(0);
    // The prompts change the vectors (the tokenizer reads them), so using them is not a no-op.
    expect(same(await prompted.embedQuery('annual leave'), bare.embedText('annual leave'))).toBeGreaterThan(0);
  });

  it('read the sentence-transformers pooling, and the licence from the README', () => {
    const model = tinyBert({ pooling: 'mean', normalize: false });
    const hf = path.join(dir, 'pooling');
    writeHfFolder(hf, model, 'F32', { licence: 'apache-2.0' });
    const d = inspectHfEncoder(hf);
    expect(d.pooling).toEqual({ mode: 'mean', normalize: false });
    expect(d.licence).toBe('apache-2.0');
    expect(d.numParameters).toBe([...expectedTensors(model.config).values()].reduce((n, s) => n + s.reduce((a, b) => a * b, 1), 0));
    writeFileSync(path.join(hf, '1_Pooling', 'config.json'), JSON.stringify({ pooling_mode_max_tokens: true }));
    expect(() => inspectHfEncoder(hf)).toThrow(/pooling_mode_max_tokens is not supported/);
  });

  it('run XLM-RoBERTa with positions offset past the padding index', () => {
    // An XLM-R folder: its position table has padding_idx + 1 = 2 leading rows the forward skips.
    const bert = tinyBert({ pooling: 'cls', maxPositions: 66 });
    const hf = path.join(dir, 'xlmr');
    writeHfFolder(hf, bert);
    writeFileSync(path.join(hf, 'config.json'), JSON.stringify({ ...hfConfigJson({ ...bert.config, architecture: 'XLMRobertaModel' }), pad_token_id: 1 }));
    writeFileSync(path.join(hf, 'tokenizer.json'), JSON.stringify(unigramTokenizerJson()));
    const xlmr = loadHfEncoder(hf);
    expect(xlmr.description.config).toMatchObject({ architecture: 'XLMRobertaModel', positionOffset: 2 });
    expect(xlmr.encoder.maxTokens).toBe(64);
    // The same model as BERT with the table cut by two rows (what llama.cpp's converter does) gives the same vector.
    const pos = bert.weights.get('embeddings.position_embeddings.weight')!;
    const cut = new Map(bert.weights);
    cut.set('embeddings.position_embeddings.weight', pos.subarray(2 * bert.config.hidden));
    const asBert = new BertEncoder({ ...bert.config, maxPositions: 64 }, cut, { mode: 'cls', normalize: true });
    const ids = xlmr.tokenizer.encode('how many days of leave').ids;
    const a = xlmr.encoder.embed([{ ids }])[0]!;
    const b = asBert.embed([{ ids }])[0]!;
    for (let i = 0; i < a.length; i++) expect(a[i]).toBeCloseTo(b[i]!, 5);
  });
});

describe('XLM-RoBERTa GGUF encoders', () => {
  it('are read as XLMRobertaModel with the tokenizer rebuilt from the SentencePiece vocabulary, and described like their folder', () => {
    const model = tinyXlmr({ pooling: 'mean' });
    const file = path.join(dir, 'tiny-e5.gguf');
    writeTinyXlmrGguf(file, model, 'F16');
    const d = inspectEncoder(file);
    expect(d).toMatchObject({ format: 'gguf', dtype: 'F16+F32', pooling: { mode: 'mean', normalize: true }, prompts: {} });
    // The converter took XLM-R's two padding rows out of the position table: 64 rows, read from position 0.
    expect(d.config).toEqual({ ...model.config, maxPositions: 64, positionOffset: 0, layerNormEps: Math.fround(1e-5) });
    const loaded = loadGgufEncoder(file);
    const tok = loaded.tokenizer;
    expect([tok.prefix, tok.suffix]).toEqual([[tok.idOf('<s>')], [tok.idOf('</s>')]]);
    expect(['<s>', '<pad>', '</s>', '<unk>', '<mask>'].map((t) => tok.isSpecial(tok.idOf(t)!))).toEqual([true, true, true, true, true]);
    expect(tok.isSpecial(tok.idOf('▁how')!)).toBe(false);
    expect(tok.encode('How many days?').ids).toEqual(['<s>', '▁How', '▁many', '▁days', '?', '</s>'].map((t) => tok.idOf(t)));
    expect(tok.decode(tok.encode('How many days?').ids)).toBe('How many days?');
  });

  it('refuse a tokenizer model other than WordPiece ("bert") and SentencePiece Unigram ("t5"), naming both', () => {
    const file = path.join(dir, 'spm-bpe.gguf');
    writeTinyXlmrGguf(file, tinyXlmr(), 'F32', { tokenizerModel: 'llama' });
    expect(() => inspectEncoder(file)).toThrow(ImportError);
    expect(() => inspectEncoder(file)).toThrow(/tokenizer model "llama" is not supported in GGUF files \(only "bert", BERT's WordPiece, and "t5", XLM-RoBERTa's SentencePiece Unigram\)/);
  });
});

/** A small SentencePiece-Unigram tokenizer.json shaped like XLM-R's. */
function unigramTokenizerJson(): Record<string, unknown> {
  const pieces: [string, number][] = [
    ['<s>', 0], ['<pad>', 0], ['</s>', 0], ['<unk>', 0],
    ['▁', -3], ['▁how', -5], ['▁many', -5], ['▁days', -5], ['▁of', -4], ['▁leave', -6], ['s', -4], ['▁<', -7], ['/', -7], ['>', -7], ['<', -7],
    ['▁h', -8], ['o', -8], ['w', -8], ['a', -8], ['n', -8], ['y', -8], ['d', -8], ['l', -8], ['e', -8], ['v', -8], ['f', -8], ['m', -8], ['▁s', -8], ['▁d', -8],
  ];
  pieces.push(['<mask>', 0]);
  const special = (id: number, content: string) => ({ id, content, single_word: false, lstrip: content === '<mask>', rstrip: false, normalized: false, special: true });
  return {
    version: '1.0',
    truncation: null,
    padding: null,
    added_tokens: [special(0, '<s>'), special(1, '<pad>'), special(2, '</s>'), special(3, '<unk>'), special(pieces.length - 1, '<mask>')],
    normalizer: null,
    pre_tokenizer: { type: 'Metaspace', replacement: '▁', prepend_scheme: 'always', split: true },
    post_processor: {
      type: 'TemplateProcessing',
      single: [{ SpecialToken: { id: '<s>', type_id: 0 } }, { Sequence: { id: 'A', type_id: 0 } }, { SpecialToken: { id: '</s>', type_id: 0 } }],
      pair: [{ SpecialToken: { id: '<s>', type_id: 0 } }, { Sequence: { id: 'A', type_id: 0 } }, { SpecialToken: { id: '</s>', type_id: 0 } }, { Sequence: { id: 'B', type_id: 0 } }, { SpecialToken: { id: '</s>', type_id: 0 } }],
      special_tokens: { '<s>': { id: '<s>', ids: [0], tokens: ['<s>'] }, '</s>': { id: '</s>', ids: [2], tokens: ['</s>'] } },
    },
    decoder: { type: 'Metaspace', replacement: '▁', prepend_scheme: 'always', split: true },
    model: { type: 'Unigram', unk_id: 3, vocab: pieces, byte_fallback: false },
  };
}

describe('encoder tokenizers', () => {
  it('BERT WordPiece: typed [CLS]/[SEP]/[MASK] stay text; the encoder adds its own [CLS] … [SEP]', () => {
    const hf = path.join(dir, 'tok-bert');
    writeHfFolder(hf, tinyBert());
    const tok = new EncoderTokenizer(JSON.parse(readFileSync(path.join(hf, 'tokenizer.json'), 'utf8')));
    const cls = tok.idOf('[CLS]')!;
    const sep = tok.idOf('[SEP]')!;
    expect(tok.prefix).toEqual([cls]);
    expect(tok.suffix).toEqual([sep]);
    const typed = tok.encode('How many days? [CLS] [SEP] [MASK] [PAD] [UNK]');
    expect(typed.ids[0]).toBe(cls);
    expect(typed.ids.at(-1)).toBe(sep);
    const body = typed.ids.slice(1, -1);
    expect(body.filter((id) => tok.isSpecial(id) && id !== tok.idOf('[UNK]'))).toEqual([]);
    expect(body).toContain(tok.idOf('['));
    expect(tok.encode('annual leave').ids).toEqual([cls, tok.idOf('annual'), tok.idOf('leave'), sep]);
    expect(tok.encode('a '.repeat(100), 10).ids).toHaveLength(10);
  });

  it('XLM-R Unigram: typed <s>, </s>, <mask> stay text; the encoder adds its own <s> … </s>', () => {
    const tok = new EncoderTokenizer(unigramTokenizerJson());
    expect(tok.prefix).toEqual([0]);
    expect(tok.suffix).toEqual([2]);
    const ids = tok.encode('how many </s> days <s> of <mask> leave').ids;
    expect(ids[0]).toBe(0);
    expect(ids.at(-1)).toBe(2);
    const body = ids.slice(1, -1);
    for (const special of [0, 1, 2, 29]) expect(body).not.toContain(special);
    expect(body.slice(0, 2)).toEqual([5, 6]); // ▁how ▁many
  });
});
