/**
 * The model registry under `$TEAMLLM_HOME/models`: numbered versions (v1, v2, ...), each a model
 * folder, with their metrics, which one is serving, and the promotion history for rollback.
 *
 *   models/registry.json   { serving, history, versions: { v1: {...}, ... } }
 *   models/v1/             model.safetensors, config.json, tokenizer.json
 *
 * Every version records the sha256 and size of its files at registration (`files`), and they
 * are checked before it is loaded: a truncated or replaced file (a full disk, an interrupted
 * copy) is refused with a message naming the version, the file and what to do, rather than
 * failing deep inside the tensor code. Versions registered before hashes were recorded are
 * "unverified": they load as before, and their hashes are recorded after their first good load.
 */
import { createHash } from 'node:crypto';
import { createReadStream, promises as fs } from 'node:fs';
import path from 'node:path';
import { exists, readJson, writeDirAtomic, writeJsonAtomic } from './files.ts';
import { readModelConfig } from './model-files.ts';
import { countParameters, validateConfig } from './config.ts';
import type { LoadedModel } from './loaded-model.ts';
import type { EncoderDescription } from './import/encoder-checkpoint.ts';
import { ENCODER_MANIFEST, ENCODER_MANIFEST_FORMAT, type EncoderManifest } from './import/encoder-manifest.ts';
import type { ChatDtype, ChatModelDescription } from './import/llama-checkpoint.ts';
import { CHAT_MANIFEST, CHAT_MANIFEST_FORMAT, readChatManifest, type ChatManifest } from './import/chat-manifest.ts';
import { PEFT_CONFIG_FILE, PEFT_WEIGHTS_FILE, readPeftAdapter, writePeftLora } from './lora/peft.ts';
import { combineLoras } from './lora/combine.ts';

/** Refuses a copy of `bytes` that would not fit (with 5% and 64 MiB to spare) on the disk of `dir`; `doing` names the work in the message. */
export async function ensureDiskSpace(dir: string, bytes: number, doing: 'import' | 'export' = 'import'): Promise<void> {
  let probe = path.resolve(dir);
  while (!(await exists(probe)) && path.dirname(probe) !== probe) probe = path.dirname(probe);
  const stats = await fs.statfs(probe);
  const free = Number(stats.bavail) * Number(stats.bsize);
  const want = Math.ceil(bytes * 1.05) + 64 * 2 ** 20;
  if (free < want) {
    const mib = (n: number) => `${(n / 2 ** 20).toFixed(0)} MiB`;
    throw new Error(`not enough disk space under ${probe}: the ${doing} needs ${mib(want)} (${mib(bytes)} of model files and a margin), ${mib(free)} are free; nothing was ${doing === 'import' ? 'copied' : 'written'}`);
  }
}

export interface ModelVersion {
  version: string;
  createdAt: string;
  /** How it was made: 'pretrain', 'sft', 'rlhf', 'import'... */
  source: string;
  /** Numbers to compare versions by (valLoss, perplexity, eval scores...). */
  metrics: Record<string, number>;
  numParameters: number;
  /** The version it was trained from, if any. */
  parent?: string;
  notes?: string;
  /**
   * The evaluation gate of the job that made it (QA not worse, reward up, KL bounded...): only a
   * version that passed is promoted automatically; an admin may promote one that did not (audited).
   */
  gate?: { passed: boolean; reasons: string[] };
  /** The training job that made it. */
  job?: number;
  /** Set by list(): whether this version is the one serving. */
  serving?: boolean;
  /** The files of the version folder (relative paths) as registered; absent on older registries. */
  files?: Record<string, RecordedFile>;
  /**
   * 'encoder': an imported sentence encoder (retrieval, not answers); 'chat': an imported
   * Llama-family chat model (served through its chat template: rag/chat-model-answerer.ts);
   * absent: a language model trained here.
   */
  kind?: 'encoder' | 'chat';
  /** A name given at import (`--name`). */
  name?: string;
  /** Imported versions: the architecture (BertModel, Qwen2ForCausalLM, ...), stored tensor types, licence, where it came from. */
  architecture?: string;
  dtype?: string;
  licence?: string;
  origin?: string;
}

export interface RecordedFile {
  sha256: string;
  bytes: number;
}

/** The files every version folder has (what register() copies in). */
export const MODEL_VERSION_FILES = ['model.safetensors', 'config.json', 'tokenizer.json'] as const;

/** What `verify` found: ok (hashes match), unverified (none recorded; files present) or damaged. */
export interface ModelCheck {
  version: string;
  status: 'ok' | 'unverified' | 'damaged';
  problems: { file: string; reason: string }[];
}

/** A version whose files are missing or do not match what was recorded: not loaded. */
export class ModelFilesError extends Error {
  constructor(
    readonly version: string,
    readonly file: string,
    detail: string,
  ) {
    super(
      `model version ${version} cannot be served: ${detail}. ` +
        'Serve the previous version with `teamllm model rollback` (or `teamllm model promote <version>`), ' +
        'or train it again (`teamllm quickstart --force`, `teamllm train ...`); `teamllm model verify` checks every version.',
    );
    this.name = 'ModelFilesError';
  }

  static from(check: ModelCheck, dir: string): ModelFilesError {
    const first = check.problems[0]!;
    const detail = check.problems.map((p) => `${path.join(dir, p.file)} ${p.reason}`).join('; ');
    return new ModelFilesError(check.version, first.file, detail);
  }
}

/** sha256 and size of a file, read as a stream (model files can be large). */
export async function hashFile(file: string): Promise<RecordedFile> {
  const hash = createHash('sha256');
  let bytes = 0;
  for await (const chunk of createReadStream(file)) {
    hash.update(chunk as Buffer);
    bytes += (chunk as Buffer).length;
  }
  return { sha256: hash.digest('hex'), bytes };
}

interface RegistryFile {
  serving: string | null;
  /** Versions promoted before the serving one, oldest first (rollback pops from the end). */
  history: string[];
  versions: Record<string, ModelVersion>;
}

export interface RegisterOptions {
  source?: string;
  metrics?: Record<string, number>;
  parent?: string;
  notes?: string;
  /** Make it the serving version right away. */
  promote?: boolean;
}

const VERSION = /^v(\d+)$/;

export class ModelRegistry {
  readonly root: string;

  /**
   * `homeDir` is $TEAMLLM_HOME; versions live in `<homeDir>/models`, or in TEAMLLM_MODELS_DIR when
   * set: one folder shared by several bot processes (a network file system), so a version trained
   * or promoted through one is served by all (docs/postgresql.md).
   */
  constructor(homeDir: string, modelsDir: string | undefined = process.env.TEAMLLM_MODELS_DIR || undefined) {
    this.root = modelsDir ? path.resolve(modelsDir) : path.join(homeDir, 'models');
  }

  private get file(): string {
    return path.join(this.root, 'registry.json');
  }

  private async read(): Promise<RegistryFile> {
    if (!(await exists(this.file))) return { serving: null, history: [], versions: {} };
    try {
      return await readJson<RegistryFile>(this.file);
    } catch (err) {
      // Say which file and what it means, not just a JSON parser's position.
      throw new Error(`the model registry ${this.file} cannot be read (${(err as Error).message}); restore it from a backup, or move it aside to start with no model versions`);
    }
  }

  private async write(reg: RegistryFile): Promise<void> {
    await writeJsonAtomic(this.file, reg);
  }

  /** Serialises read-modify-write sequences within this process. */
  private queue: Promise<unknown> = Promise.resolve();
  private exclusive<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.queue.then(fn, fn);
    this.queue = run.catch(() => undefined);
    return run;
  }

  /** The folder of a version. */
  dir(version: string): string {
    if (!VERSION.test(version)) throw new Error(`Not a version name: ${version}`);
    return path.join(this.root, version);
  }

  async list(): Promise<ModelVersion[]> {
    const reg = await this.read();
    return Object.values(reg.versions)
      .sort((a, b) => Number(VERSION.exec(a.version)![1]) - Number(VERSION.exec(b.version)![1]))
      .map((v) => ({ ...v, serving: v.version === reg.serving }));
  }

  async get(version: string): Promise<ModelVersion | undefined> {
    const reg = await this.read();
    const v = reg.versions[version];
    return v ? { ...v, serving: v.version === reg.serving } : undefined;
  }

  /** Copies a model folder in as the next version. */
  async register(modelDir: string, options: RegisterOptions = {}): Promise<ModelVersion> {
    const config = await readModelConfig(modelDir);
    const gpt = validateConfig(config.model);
    return this.exclusive(async () => {
      const reg = await this.read();
      let n = 0;
      for (const name of Object.keys(reg.versions)) n = Math.max(n, Number(VERSION.exec(name)?.[1] ?? 0));
      if (await exists(this.root)) {
        for (const name of await fs.readdir(this.root)) n = Math.max(n, Number(VERSION.exec(name)?.[1] ?? 0));
      }
      const version = `v${n + 1}`;
      const files: Record<string, RecordedFile> = {};
      await writeDirAtomic(this.dir(version), async (tmp) => {
        for (const f of MODEL_VERSION_FILES) {
          await fs.copyFile(path.join(modelDir, f), path.join(tmp, f));
          // Hashed as copied, so what is recorded is what the version folder holds.
          files[f] = await hashFile(path.join(tmp, f));
        }
      });
      const metaMetrics = (config.meta?.metrics ?? {}) as Record<string, number>;
      const entry: ModelVersion = {
        version,
        createdAt: new Date().toISOString(),
        source: options.source ?? String(config.meta?.source ?? 'unknown'),
        metrics: { ...metaMetrics, ...(options.metrics ?? {}) },
        numParameters: countParameters(gpt),
        files,
      };
      if (options.parent) entry.parent = options.parent;
      if (options.notes) entry.notes = options.notes;
      reg.versions[version] = entry;
      if (options.promote) this.promoteIn(reg, version);
      await this.write(reg);
      return { ...entry, serving: reg.serving === version };
    });
  }

  /**
   * Copies an imported encoder in as the next version: the files its description lists (checked
   * before: see inspectEncoder), plus `encoder.json`, the manifest its loader reads. The disk is
   * checked for room first; nothing is left behind when a copy fails.
   */
  async registerEncoder(description: EncoderDescription, options: { name?: string; notes?: string } = {}): Promise<ModelVersion> {
    const manifest: EncoderManifest = {
      format: ENCODER_MANIFEST_FORMAT,
      from: description.format,
      ...(description.format === 'gguf' ? { file: description.files[0]!.file } : {}),
      architecture: description.config.architecture,
      pooling: description.pooling,
      poolingSource: description.poolingSource,
      dtype: description.dtype,
      numParameters: description.numParameters,
      dimensions: description.config.hidden,
      licence: description.licence,
      origin: path.resolve(description.location),
      ...(description.prompts.query || description.prompts.document ? { prompts: description.prompts } : {}),
    };
    return this.registerImport('encoder', description, ENCODER_MANIFEST, manifest, options);
  }

  /**
   * Copies an imported chat model in as the next version (checked before: see inspectImport),
   * plus `chat-model.json`, the manifest its loader reads; as registerEncoder does.
   */
  async registerChatModel(description: ChatModelDescription, options: { name?: string; notes?: string; dtype?: ChatDtype } = {}): Promise<ModelVersion> {
    const manifest: ChatManifest = {
      format: CHAT_MANIFEST_FORMAT,
      from: description.format,
      ...(description.format === 'gguf' ? { file: description.files[0]!.file } : {}),
      architecture: description.config.architecture,
      dtype: description.dtype,
      numParameters: description.numParameters,
      licence: description.licence,
      origin: path.resolve(description.location),
      eosIds: description.eosIds,
      hasChatTemplate: description.hasChatTemplate,
      ...(options.dtype && options.dtype !== 'auto' ? { servingDtype: options.dtype } : {}),
    };
    return this.registerImport('chat', description, CHAT_MANIFEST, manifest, options);
  }

  /**
   * Registers a LoRA adapter on an imported chat model (PEFT's folder: adapter_config.json +
   * adapter_model.safetensors, checked to read) as the next version: its two files and a manifest
   * naming the base, served as the base with the adapter merged (chat-manifest.ts). Whether it
   * fits the base is checked where the caller can load the base (model-service, the SFT job).
   */
  async registerChatAdapter(
    adapterDir: string,
    baseVersion: string,
    options: {
      source?: string;
      name?: string;
      notes?: string;
      metrics?: Record<string, number>;
      gate?: { passed: boolean; reasons: string[] };
      /**
       * A base that is itself an adapter version: 'combine' registers the adapter (trained on that
       * version, its adapter merged) together with it as one adapter over the imported model
       * (lora/combine.ts), its parent the adapter version; without it such a base is refused.
       */
      onAdapter?: 'combine';
    } = {},
  ): Promise<ModelVersion> {
    let lora = readPeftAdapter(adapterDir);
    return this.exclusive(async () => {
      const reg = await this.read();
      const base = reg.versions[baseVersion];
      if (!base) throw new Error(`No model version ${baseVersion}`);
      if (base.kind !== 'chat') throw new Error(`${baseVersion} is not an imported chat model: a PEFT adapter goes on one (teamllm's own models take teamllm adapters)`);
      const baseManifest = readChatManifest(this.dir(baseVersion));
      if (baseManifest.adapter && options.onAdapter !== 'combine') throw new Error(`${baseVersion} is itself an adapter (on ${baseManifest.adapter.base}); put the adapter on that imported model`);
      const combined = baseManifest.adapter ? combineLoras(readPeftAdapter(this.dir(baseVersion)), lora) : undefined;
      if (combined) lora = combined;
      const servedOn = baseManifest.adapter?.base ?? baseVersion;
      const manifest: ChatManifest = { ...baseManifest, origin: path.resolve(adapterDir), adapter: { base: servedOn } };
      const version = `v${(await this.highestNumber(reg)) + 1}`;
      const files: Record<string, RecordedFile> = {};
      await writeDirAtomic(this.dir(version), async (tmp) => {
        if (combined) await writePeftLora(tmp, combined);
        for (const file of [PEFT_CONFIG_FILE, PEFT_WEIGHTS_FILE]) {
          if (!combined) await fs.copyFile(path.join(adapterDir, file), path.join(tmp, file));
          files[file] = await hashFile(path.join(tmp, file));
        }
        await fs.writeFile(path.join(tmp, CHAT_MANIFEST), `${JSON.stringify(manifest, null, 2)}\n`);
        files[CHAT_MANIFEST] = await hashFile(path.join(tmp, CHAT_MANIFEST));
      });
      const entry: ModelVersion = {
        version,
        createdAt: new Date().toISOString(),
        source: options.source ?? 'import',
        metrics: options.metrics ?? {},
        numParameters: base.numParameters,
        parent: baseVersion,
        files,
        kind: 'chat',
        ...(base.architecture ? { architecture: base.architecture } : {}),
        ...(base.dtype ? { dtype: base.dtype } : {}),
        ...(base.licence ? { licence: base.licence } : {}),
        origin: manifest.origin,
        notes: (options.notes ?? `LoRA r=${lora.config.rank} alpha=${lora.config.alpha} on ${lora.config.targets.join(', ')}, over ${servedOn}`) + (combined ? ` (with ${baseVersion}'s adapter: one LoRA of rank ${lora.config.rank} over ${servedOn})` : ''),
        ...(options.name ? { name: options.name } : {}),
        ...(options.gate ? { gate: options.gate } : {}),
      };
      reg.versions[version] = entry;
      await this.write(reg);
      return { ...entry, serving: reg.serving === version };
    });
  }

  private async registerImport(
    kind: 'encoder' | 'chat',
    description: { format: 'hf' | 'gguf'; location: string; files: { file: string; bytes: number }[]; numParameters: number; dtype: string; licence: string; config: { architecture: string } },
    manifestName: string,
    manifest: { origin: string },
    options: { name?: string; notes?: string },
  ): Promise<ModelVersion> {
    const needed = description.files.reduce((n, f) => n + f.bytes, 0);
    await ensureDiskSpace(this.root, needed);
    const sourceDir = description.format === 'gguf' ? path.dirname(description.location) : description.location;
    return this.exclusive(async () => {
      const reg = await this.read();
      const version = `v${(await this.highestNumber(reg)) + 1}`;
      const files: Record<string, RecordedFile> = {};
      await writeDirAtomic(this.dir(version), async (tmp) => {
        for (const { file } of description.files) {
          await fs.mkdir(path.dirname(path.join(tmp, file)), { recursive: true });
          await fs.copyFile(path.join(sourceDir, file), path.join(tmp, file));
          files[file] = await hashFile(path.join(tmp, file));
        }
        await fs.writeFile(path.join(tmp, manifestName), `${JSON.stringify(manifest, null, 2)}\n`);
        files[manifestName] = await hashFile(path.join(tmp, manifestName));
      });
      const entry: ModelVersion = {
        version,
        createdAt: new Date().toISOString(),
        source: 'import',
        metrics: {},
        numParameters: description.numParameters,
        files,
        kind,
        architecture: description.config.architecture,
        dtype: description.dtype,
        licence: description.licence,
        origin: manifest.origin,
        ...(options.name ? { name: options.name } : {}),
        ...(options.notes ? { notes: options.notes } : {}),
      };
      reg.versions[version] = entry;
      await this.write(reg);
      return { ...entry, serving: false };
    });
  }

  /** The highest version number in the registry or among the folders (a crashed import's folder is never reused). */
  private async highestNumber(reg: RegistryFile): Promise<number> {
    let n = 0;
    for (const name of Object.keys(reg.versions)) n = Math.max(n, Number(VERSION.exec(name)?.[1] ?? 0));
    if (await exists(this.root)) {
      for (const name of await fs.readdir(this.root)) n = Math.max(n, Number(VERSION.exec(name)?.[1] ?? 0));
    }
    return n;
  }

  private promoteIn(reg: RegistryFile, version: string): void {
    if (!reg.versions[version]) throw new Error(`No model version ${version}`);
    if (reg.versions[version].kind === 'encoder') {
      throw new Error(`${version} is an imported encoder: it serves retrieval, not answers; use it with \`teamllm kb reindex --encoder ${version}\``);
    }
    if (reg.serving === version) return;
    if (reg.serving) reg.history.push(reg.serving);
    reg.serving = version;
  }

  /** Makes `version` the serving model; the previous one can be restored with rollback(). */
  async promote(version: string): Promise<ModelVersion> {
    return this.exclusive(async () => {
      const reg = await this.read();
      this.promoteIn(reg, version);
      await this.write(reg);
      return { ...reg.versions[version]!, serving: true };
    });
  }

  /**
   * Goes back to the version that served before the current one; rolling back the first version
   * ever promoted leaves no model serving (answers quote the knowledge base): `undefined`.
   */
  async rollback(): Promise<ModelVersion | undefined> {
    return this.exclusive(async () => {
      const reg = await this.read();
      if (!reg.serving) throw new Error('Nothing to roll back to: no model version is serving');
      let previous = reg.history.pop();
      while (previous && !reg.versions[previous]) previous = reg.history.pop();
      reg.serving = previous ?? null;
      await this.write(reg);
      return previous ? { ...reg.versions[previous]!, serving: true } : undefined;
    });
  }

  /** Records what the evaluation gate (and the job that made it) said about a version. */
  async annotate(version: string, note: { gate?: { passed: boolean; reasons: string[] }; job?: number; metrics?: Record<string, number> }): Promise<ModelVersion> {
    return this.exclusive(async () => {
      const reg = await this.read();
      const entry = reg.versions[version];
      if (!entry) throw new Error(`No model version ${version}`);
      if (note.gate) entry.gate = { passed: note.gate.passed, reasons: [...note.gate.reasons] };
      if (note.job !== undefined) entry.job = note.job;
      if (note.metrics) entry.metrics = { ...entry.metrics, ...note.metrics };
      await this.write(reg);
      return { ...entry, serving: reg.serving === version };
    });
  }

  /**
   * Checks a version's files against the hashes recorded at registration (missing, truncated,
   * changed). A version without recorded hashes is 'unverified' when its files are present.
   */
  async verify(version: string): Promise<ModelCheck> {
    const entry = await this.get(version);
    if (!entry) throw new Error(`No model version ${version}`);
    const dir = this.dir(version);
    const problems: ModelCheck['problems'] = [];
    const recorded = entry.files;
    for (const file of recorded ? Object.keys(recorded) : MODEL_VERSION_FILES) {
      const full = path.join(dir, file);
      const stat = await fs.stat(full).catch(() => undefined);
      const want = recorded?.[file];
      if (!stat) problems.push({ file, reason: 'is missing' });
      else if (want && stat.size !== want.bytes) problems.push({ file, reason: `is ${stat.size} bytes, ${want.bytes} were recorded at registration (truncated or replaced)` });
      else if (want && (await hashFile(full)).sha256 !== want.sha256) problems.push({ file, reason: 'does not match the sha256 recorded at registration (changed or damaged)' });
    }
    return { version, status: problems.length > 0 ? 'damaged' : recorded ? 'ok' : 'unverified', problems };
  }

  /** Throws ModelFilesError when the version is damaged; returns the check otherwise. */
  async assertIntact(version: string): Promise<ModelCheck> {
    const check = await this.verify(version);
    if (check.status === 'damaged') throw ModelFilesError.from(check, this.dir(version));
    return check;
  }

  /**
   * Records the hashes of files of a version folder (relative paths): files added after
   * registration (a LoRA adapter), or every file of an older, unverified version after it loaded.
   */
  async recordFiles(version: string, files: readonly string[] = MODEL_VERSION_FILES): Promise<void> {
    const hashed: Record<string, RecordedFile> = {};
    for (const f of files) hashed[f] = await hashFile(path.join(this.dir(version), f));
    await this.exclusive(async () => {
      const reg = await this.read();
      const entry = reg.versions[version];
      if (!entry) return;
      entry.files = { ...entry.files, ...hashed };
      await this.write(reg);
    });
  }

  /** Versions promoted before the serving one, most recent first (where a fallback looks). */
  async history(): Promise<string[]> {
    const reg = await this.read();
    return [...reg.history].reverse().filter((v, i, all) => reg.versions[v] && v !== reg.serving && all.indexOf(v) === i);
  }

  /** The version rollback() would return to (undefined: none, or nothing serves). */
  async previous(): Promise<string | undefined> {
    const reg = await this.read();
    return [...reg.history].reverse().find((v) => reg.versions[v]);
  }

  /** The serving version, if any. */
  async serving(): Promise<ModelVersion | undefined> {
    const reg = await this.read();
    return reg.serving ? { ...reg.versions[reg.serving]!, serving: true } : undefined;
  }

  /** Removes a version that is not serving. */
  async remove(version: string): Promise<void> {
    return this.exclusive(async () => {
      const reg = await this.read();
      if (reg.serving === version) throw new Error(`${version} is serving; promote another version first`);
      if (!reg.versions[version]) throw new Error(`No model version ${version}`);
      delete reg.versions[version];
      reg.history = reg.history.filter((v) => v !== version);
      await this.write(reg);
      await fs.rm(this.dir(version), { recursive: true, force: true });
    });
  }

  /** Loads the serving model (undefined when nothing serves yet). */
  async loadServing(): Promise<LoadedModel | undefined> {
    const v = await this.serving();
    if (!v) return undefined;
    await this.assertIntact(v.version);
    const { LoadedModel } = await import('./loaded-model.ts');
    return LoadedModel.load(this.dir(v.version), v.version);
  }
}
