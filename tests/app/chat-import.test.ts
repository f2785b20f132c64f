/**
 * `teamllm model import` of Llama-family chat models end to end, through the real CLI: a tiny
 * random-weight Qwen2 as a Hugging Face folder (BF16, sharded, with a LICENSE) and a Llama as a
 * Q8_0 GGUF are registered with architecture, parameter count, dtype and licence; a folder whose
 * weights do not match its config and an unsupported architecture are refused before anything is
 * copied; both are promoted, answer `teamllm ask --json` and roll back through the CLI; the
 * registered files verify and load back into a model that gives the source's logits; `--dtype`
 * records the precision the weights are served in.
 */
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { teamllm } from './import-cli.ts';
import { loadChatModelVersion } from '../../src/model/import/chat-manifest.ts';
import { loadHfChatModel } from '../../src/model/import/llama-checkpoint.ts';
import { tinyChatModel, writeChatGguf, writeHfChatFolder } from '../model/import/tiny-llama.ts';


const versions = (home: string) => (existsSync(join(home, 'models')) ? readdirSync(join(home, 'models')).filter((f) => /^v\d+$/.test(f)) : []);

describe('teamllm model import of chat models', () => {
  it('registers a Qwen2 folder and a Llama GGUF, refuses what it cannot run before copying, and promotes and rolls them back', { timeout: 120_000 }, async () => {
    const home = mkdtempSync(join(tmpdir(), 'teamllm-chat-import-'));
    try {
      const qwen = tinyChatModel('qwen2', 9);
      const folder = join(home, 'downloads', 'tiny-qwen');
      writeHfChatFolder(folder, qwen, 'BF16', { sharded: true, licence: 'Apache License 2.0' });
      const gguf = join(home, 'downloads', 'tiny-llama-q8_0.gguf');
      writeChatGguf(gguf, tinyChatModel('llama', 9), 'Q8_0');

      const broken = join(home, 'downloads', 'broken');
      writeHfChatFolder(broken, qwen);
      writeFileSync(join(broken, 'config.json'), JSON.stringify({ ...qwen.hfConfig, num_key_value_heads: 4 }));
      const mismatch = await teamllm(home, ['model', 'import', broken]);
      expect(mismatch.code).toBe(1);
      expect(mismatch.stderr).toMatch(/does not match its config: model\.layers\.0\.self_attn\.k_proj\.weight is \[32, 64\], the config implies \[64, 64\]/);
      const other = join(home, 'downloads', 'phi');
      mkdirSync(other, { recursive: true });
      writeFileSync(join(other, 'config.json'), JSON.stringify({ architectures: ['Phi3ForCausalLM'] }));
      const refused = await teamllm(home, ['model', 'import', other]);
      expect(refused.code).toBe(1);
      expect(refused.stderr).toContain('Phi3ForCausalLM: teamllm imports the chat models LlamaForCausalLM, MistralForCausalLM, Qwen2ForCausalLM, Qwen3ForCausalLM and the encoders BertModel and XLMRobertaModel');
      expect(versions(home)).toEqual([]);

      const imported = await teamllm(home, ['model', 'import', folder, '--name', 'tiny-qwen']);
      expect(imported.code, imported.stderr).toBe(0);
      expect(imported.stdout).toContain('Imported v1 "tiny-qwen": Qwen2ForCausalLM, ');
      expect(imported.stdout).toMatch(/BF16, 2 layers, 4\/2 heads/);
      expect(imported.stdout).toContain('Licence: Apache License 2.0');
      expect(imported.stdout).toContain(`end-of-turn ids ${qwen.eosIds.join(', ')}`);
      const fromGguf = await teamllm(home, ['model', 'import', gguf]);
      expect(fromGguf.code, fromGguf.stderr).toBe(0);
      expect(fromGguf.stdout).toMatch(/Imported v2: LlamaForCausalLM, [\d,]+ parameters, F32\+Q8_0/);

      const registry = JSON.parse(readFileSync(join(home, 'models', 'registry.json'), 'utf8')) as { versions: Record<string, Record<string, unknown>> };
      expect(registry.versions.v1).toMatchObject({ kind: 'chat', architecture: 'Qwen2ForCausalLM', dtype: 'BF16', licence: 'Apache License 2.0', name: 'tiny-qwen', source: 'import' });
      expect(registry.versions.v1!.numParameters).toBe(loadHfChatModel(folder).description.numParameters);
      expect(Object.keys(registry.versions.v1!.files as object).sort()).toEqual(['LICENSE', 'chat-model.json', 'config.json', 'generation_config.json', 'model-00001-of-00002.safetensors', 'model-00002-of-00002.safetensors', 'model.safetensors.index.json', 'tokenizer.json', 'tokenizer_config.json']);

      const list = await teamllm(home, ['model', 'list']);
      expect(list.stdout).toMatch(/• v1 "tiny-qwen" — imported chat model Qwen2ForCausalLM.*\(serve it: teamllm model promote v1\)/);
      const promote = await teamllm(home, ['model', 'promote', 'v1']);
      expect(promote.code, promote.stderr).toBe(0);
      expect(promote.stdout).toMatch(/^Now answering with v1\./);
      expect((await teamllm(home, ['model', 'list'])).stdout).toMatch(/▶ v1 \(serving\) "tiny-qwen" — imported chat model Qwen2ForCausalLM/);
      // The GGUF one serves too; with no documents the gate refuses before the model is asked.
      expect((await teamllm(home, ['model', 'promote', 'v2'])).stdout).toMatch(/^Now answering with v2 \(was v1; \/model rollback returns to it\)/);
      const asked = await teamllm(home, ['ask', '--json', 'How many days of annual leave do I get?']);
      expect(asked.code, asked.stderr).toBe(0);
      expect(JSON.parse(asked.stdout)).toMatchObject({ direct: '', sources: [], model: 'LlamaForCausalLM' });
      expect((await teamllm(home, ['model', 'rollback'])).stdout).toContain('Rolled back: answering with v1 again (was v2).');
      const verify = await teamllm(home, ['model', 'verify']);
      expect(verify.code, verify.stdout + verify.stderr).toBe(0);

      // The copied version loads back into the same model as its source folder.
      const ids = [5, 17, 99, 3, 250, 42];
      const back = loadChatModelVersion(join(home, 'models', 'v1'));
      expect(back.manifest.from).toBe('hf');
      const a = back.model.forward(ids);
      const b = loadHfChatModel(folder).model.forward(ids);
      expect(Math.max(...a.map((x, i) => Math.abs(x - b[i]!)))).toBe(0);
      expect(loadChatModelVersion(join(home, 'models', 'v2')).manifest.from).toBe('gguf');

      // --dtype: the precision the weights are served in, recorded with the version; the file's own by default.
      expect(back.model.weightDtype()).toBe('bf16');
      const badDtype = await teamllm(home, ['model', 'import', folder, '--dtype', 'q4']);
      expect(badDtype.code).toBe(1);
      expect(badDtype.stderr).toContain('--dtype must be bf16, int8 or f32, not "q4"');
      const int8 = await teamllm(home, ['model', 'import', folder, '--dtype', 'int8']);
      expect(int8.code, int8.stderr).toBe(0);
      expect(int8.stdout).toMatch(/Imported v3: Qwen2ForCausalLM, [\d,]+ parameters, BF16 \(served as int8\)/);
      const served = loadChatModelVersion(join(home, 'models', 'v3'));
      expect(served.manifest.servingDtype).toBe('int8');
      expect(served.model.weightDtype()).toBe('int8');
      expect(versions(home).sort()).toEqual(['v1', 'v2', 'v3']);
    } finally {
      rmSync(home, { recursive: true, force: true });
    }
  });
});
