/**
 * `teamllm model import <folder|file.gguf>`: which importer reads it. A Hugging Face folder by its
 * config.json `architectures`, a GGUF file by `general.architecture`; anything else is refused
 * with both lists of what is supported. Nothing but headers and small JSON files is read here.
 */
import { existsSync, readFileSync, statSync } from 'node:fs';
import path from 'node:path';
import { inspectEncoder, type EncoderDescription } from './encoder-checkpoint.ts';
import { SUPPORTED_ENCODERS } from './encoder-config.ts';
import { ImportError } from './hf-folder.ts';
import { GgufFile } from './gguf.ts';
import { inspectGgufChatModel, inspectHfChatModel, type ChatModelDescription } from './llama-checkpoint.ts';
import { SUPPORTED_CHAT_MODELS } from './llama-config.ts';

export type ImportDescription = { kind: 'encoder'; description: EncoderDescription } | { kind: 'chat'; description: ChatModelDescription };

const SUPPORTED = `teamllm imports the chat models ${SUPPORTED_CHAT_MODELS.join(', ')} and the encoders ${SUPPORTED_ENCODERS.join(' and ')}`;

export function inspectImport(location: string): ImportDescription {
  if (!existsSync(location)) throw new ImportError(`${location} does not exist`);
  if (statSync(location).isFile()) {
    let arch: string | undefined;
    try {
      const g = GgufFile.open(location);
      arch = g.get<string>('general.architecture');
      g.close();
    } catch (err) {
      throw new ImportError(`${(err as Error).message} (teamllm imports Hugging Face folders and GGUF files)`);
    }
    if (arch === 'bert') return { kind: 'encoder', description: inspectEncoder(location) };
    const { gguf, tokenizer: _t, ...description } = inspectGgufChatModel(location);
    gguf.close();
    return { kind: 'chat', description };
  }
  const configFile = path.join(location, 'config.json');
  if (!existsSync(configFile)) throw new ImportError(`${location} has no config.json (a Hugging Face model folder has config.json, model.safetensors and tokenizer.json)`);
  let raw: Record<string, unknown>;
  try {
    raw = JSON.parse(readFileSync(configFile, 'utf8')) as Record<string, unknown>;
  } catch (err) {
    throw new ImportError(`${configFile} cannot be read as JSON: ${(err as Error).message}`);
  }
  const declared = Array.isArray(raw.architectures) ? (raw.architectures as string[])[0] : undefined;
  if (declared && (SUPPORTED_CHAT_MODELS as readonly string[]).includes(declared)) {
    const { tensors: _x, tokenizer: _t, ...description } = inspectHfChatModel(location);
    return { kind: 'chat', description };
  }
  const encoderType = raw.model_type === 'bert' || raw.model_type === 'xlm-roberta';
  if ((declared && (SUPPORTED_ENCODERS as readonly string[]).includes(declared)) || (!declared && encoderType)) return { kind: 'encoder', description: inspectEncoder(location) };
  throw new ImportError(`${configFile} declares ${declared ? `architecture ${declared}` : `no "architectures" (model_type ${String(raw.model_type ?? 'missing')})`}: ${SUPPORTED}`);
}
