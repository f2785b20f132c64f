/**
 * `teamllm model export` through the real CLI: an imported tiny Qwen2 (BF16 folder with a LICENSE)
 * written as a GGUF file and as a Hugging Face folder, what is refused says
 * why (peft before adapters exist, a non-empty folder, a dtype the format cannot hold, a missing
 * version or --format) and writes nothing.
 */
import { mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { teamllm } from './import-cli.ts';
import { loadGgufChatModel, loadHfChatModel } from '../../src/model/import/llama-checkpoint.ts';
import { roundedChat, tinyChatModel, writeHfChatFolder } from '../model/import/tiny-llama.ts';

describe('teamllm model export', () => {
  it('writes an imported chat model as GGUF and as a Hugging Face folder, and refuses what it cannot write', { timeout: 120_000 }, async () => {
    const home = mkdtempSync(join(tmpdir(), 'teamllm-chat-export-cli-'));
    try {
      const qwen = roundedChat(tinyChatModel('qwen2', 4), 'BF16');
      const folder = join(home, 'downloads', 'tiny-qwen');
      writeHfChatFolder(folder, qwen, 'BF16', { licence: 'Apache License 2.0' });
      expect((await teamllm(home, ['model', 'import', folder, '--name', 'tiny-qwen'])).code).toBe(0);

      const ggufDir = join(home, 'exports', 'gguf');
      const gguf = await teamllm(home, ['model', 'export', 'v1', '--format', 'gguf', '--dtype', 'q8_0', ggufDir]);
      expect(gguf.code, gguf.stderr).toBe(0);
      expect(gguf.stdout).toContain(`Exported v1 "tiny-qwen" as GGUF (q8_0) to ${ggufDir}: LICENSE, README.md, tiny-qwen-Q8_0.gguf`);
      expect(gguf.stdout).toContain('Licence recorded at import: Apache License 2.0');
      expect(gguf.stdout).toContain(`Check it: llama-cli -m ${join(ggufDir, 'tiny-qwen-Q8_0.gguf')}`);
      expect(loadGgufChatModel(join(ggufDir, 'tiny-qwen-Q8_0.gguf')).description).toMatchObject({ dtype: 'F32+Q8_0', licence: 'Apache License 2.0' });

      const hfDir = join(home, 'exports', 'hf');
      const hf = await teamllm(home, ['model', 'export', 'v1', '--format', 'hf', hfDir]);
      expect(hf.code, hf.stderr).toBe(0);
      expect(hf.stdout).toMatch(/as a Hugging Face folder \(bf16\) to .*: LICENSE, README\.md, config\.json, generation_config\.json, model\.safetensors, tokenizer\.json, tokenizer_config\.json/);
      expect(loadHfChatModel(hfDir).description).toMatchObject({ dtype: 'BF16', licence: 'Apache License 2.0' });


      const busy = join(home, 'exports', 'busy');
      mkdirSync(busy);
      writeFileSync(join(busy, 'keep.txt'), 'mine');
      const refusals: [string[], RegExp][] = [
        [['model', 'export', 'v1', '--format', 'peft', join(home, 'exports', 'peft')], /--format peft writes a LoRA adapter version/],
        [['model', 'export', 'v1', '--format', 'gguf', busy], /is not empty \(1 entry\): export writes into a new or empty folder/],
        [['model', 'export', 'v1', '--format', 'hf', '--dtype', 'q8_0', join(home, 'exports', 'q8')], /a Hugging Face folder holds f32, f16 or bf16 weights/],
        [['model', 'export', 'v1', '--format', 'gguf', '--dtype', 'int8', join(home, 'exports', 'int8')], /--dtype must be f32, f16, bf16 or q8_0 for export, not "int8"/],
        [['model', 'export', 'v9', '--format', 'gguf', join(home, 'exports', 'v9')], /No model version v9/],
        [['model', 'export', 'v1', join(home, 'exports', 'noformat')], /usage: teamllm model export <version> --format hf\|gguf/],
      ];
      for (const [args, message] of refusals) {
        const r = await teamllm(home, args);
        expect(r.code, args.join(' ')).toBe(1);
        expect(r.stderr).toMatch(message);
      }
      expect(readdirSync(join(home, 'exports')).sort()).toEqual(['busy', 'gguf', 'hf']);
      expect(readdirSync(busy)).toEqual(['keep.txt']);
    } finally {
      rmSync(home, { recursive: true, force: true });
    }
  });
});
