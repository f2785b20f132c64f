import { formatMetrics } from '../training/jobs/job-format.ts';
import path from 'node:path';
import type { Actor, Answerer, BotStore, Logger, ModelService } from '../core/index.ts';
import type { Bot } from '../core/index.ts';
import type { LoadedModel } from '../model/loaded-model.ts';
import { ModelFilesError, type ModelRegistry, type ModelVersion } from '../model/registry.ts';
import { ServedModels } from '../model/lora/served-models.ts';
import { inspectImport } from '../model/import/inspect-import.ts';
import { exportChatModel, EXPORT_DTYPES, EXPORT_FORMATS, type ExportDtype, type ExportFormat } from '../model/import/chat-export.ts';

export { EXPORT_DTYPES, EXPORT_FORMATS, type ExportDtype, type ExportFormat };
import { inspectChatModelVersion, loadChatModelVersion, readChatManifest } from '../model/import/chat-manifest.ts';
import { checkPeftFits, isPeftAdapterFolder, readPeftAdapter } from '../model/lora/peft.ts';
import { fromLlamaConfig } from '../model/config.ts';
import { WorkerChatModel, type ChatWorkerInput } from '../model/import/worker-chat-model.ts';
import type { HeldChatModel, TokenGenerator } from '../model/import/chat-generation.ts';
import { LlamaCppChatModel, type LlamaCppOptions } from '../model/import/llama-cpp-chat-model.ts';
import type { ChatDtype, LoadedChatModel } from '../model/import/llama-checkpoint.ts';

export interface RegistryModelServiceOptions {
  registry: ModelRegistry;
  store: BotStore;
  logger: Logger;
  /** Builds the answerer that serves a loaded model (retrieval + generation). */
  answererFor: (model: LoadedModel) => Answerer;
  /**
   * Builds the answerer that serves an imported chat model (kind 'chat': retrieval, the same
   * "don't know" gate, generation through its chat template). Without it such a version cannot serve.
   */
  chatAnswererFor?: (chat: ServedChat, version: ModelVersion) => Answerer;
  /**
   * Where an imported chat model runs: a worker thread (the default; `true`, or the worker's
   * options), so its forward passes never hold the event loop; false: on this thread (tools, tests).
   */
  chatWorker?: boolean | Omit<ChatWorkerInput, 'dir'>;
  /**
   * What generates an imported chat model's answers: 'teamllm' (default: its own engine, where
   * chatWorker says) or llama.cpp through node-llama-cpp on the version's GGUF export (with
   * llama.cpp's options); without node-llama-cpp, one logged line and teamllm's engine.
   */
  servingEngine?: 'teamllm' | ({ engine: 'llama.cpp' } & Partial<Omit<LlamaCppOptions, 'name'>>);
  /** Serves when no version is promoted: the retrieval-only answerer. */
  fallback: Answerer;
  /** Answers still streaming on a replaced model finish before its weights are freed. */
  disposeAfterMs?: number;
  /**
   * Runs a promotion or rollback; with a store shared by several processes, under the database's
   * promotion lock (PgStore.withPromotionLock), so two of them never interleave on the registry.
   */
  serialise?: <T>(work: () => Promise<T>) => Promise<T>;
}

function describe(v: ModelVersion): string {
  if (v.kind === 'encoder') {
    return `• ${v.version}${v.name ? ` "${v.name}"` : ''} — imported encoder ${v.architecture ?? ''}, ${v.numParameters.toLocaleString('en-US')} parameters, ${v.dtype ?? ''}, licence ${v.licence ?? 'unknown'}, ${v.createdAt.slice(0, 16).replace('T', ' ')} (retrieval: teamllm kb reindex --encoder ${v.version})`;
  }
  if (v.kind === 'chat') {
    return `${v.serving ? '▶' : '•'} ${v.version}${v.serving ? ' (serving)' : ''}${v.name ? ` "${v.name}"` : ''} — imported chat model ${v.architecture ?? ''}, ${v.numParameters.toLocaleString('en-US')} parameters, ${v.dtype ?? ''}, licence ${v.licence ?? 'unknown'}, ${v.createdAt.slice(0, 16).replace('T', ' ')}${v.serving ? '' : ` (serve it: teamllm model promote ${v.version})`}`;
  }
  const metrics = formatMetrics(v.metrics);
  const gate = v.gate ? `\n    gate ${v.gate.passed ? 'passed' : 'NOT passed'}${v.gate.reasons.length ? `: ${v.gate.reasons.join('; ')}` : ''}` : '';
  return `${v.serving ? '▶' : '•'} ${v.version}${v.serving ? ' (serving)' : ''} — ${v.source}, ${v.numParameters.toLocaleString('en-US')} parameters, ${v.createdAt.slice(0, 16).replace('T', ' ')}${metrics ? ` — ${metrics}` : ''}${v.parent ? `, from ${v.parent}` : ''}${gate}`;
}

/** How a promotion came about, for the audit log. */
export interface PromotionContext {
  /** Made by the job runner after the stage's evaluation gate passed (not by a person). */
  auto?: boolean;
  /** The training job whose model this is. */
  job?: number;
}

/** The serving version could not be loaded: what serves instead, for /healthz and the admin page. */
export interface ModelFallback {
  /** The version the registry says serves. */
  wanted: string;
  /** The file found missing or damaged (or the one that failed to load). */
  file: string;
  reason: string;
  /** What answers instead: an earlier version, or null for retrieval-only answers. */
  serving: string | null;
  since: number;
}

/**
 * /model and `teamllm model`: versions from the registry; promote and rollback swap the Bot's
 * answerer without a restart (answers in flight finish on the old model) and are audited.
 */
/** An imported chat model as served: in this thread (LlamaModel) or held by a worker thread (WorkerChatModel). */
export type ServedChat = Omit<LoadedChatModel, 'model'> & { model: LoadedChatModel['model'] | TokenGenerator };

export class RegistryModelService implements ModelService {
  private active: { version: string } | undefined;
  /** The imported chat model in memory (one at a time; answers in flight keep theirs until they finish). */
  private chat: { key: string; loaded: ServedChat; worker?: HeldChatModel } | undefined;
  /** Workers (or llama.cpp models) of replaced versions, ending once the answers in flight on them finish. */
  private readonly retiring = new Set<HeldChatModel>();
  /** Why the llama.cpp engine cannot run here, once found (said once in the log). */
  private llamaCppUnavailable: string | undefined;
  private bot: Bot | undefined;
  /** Loaded weights: LoRA versions are served over their base, so switching among them reloads no base. */
  private readonly served: ServedModels;
  private activating: Promise<void> = Promise.resolve();
  /** Set while the serving version is refused (damaged files) and another one, or none, answers. */
  private refused: (ModelFallback & { createdAt: string }) | undefined;

  constructor(private readonly options: RegistryModelServiceOptions) {
    this.served = new ServedModels(options.registry, {
      disposeAfterMs: options.disposeAfterMs ?? 180_000,
      log: (message, detail) => options.logger.warn(detail, message),
    });
  }

  /** The Bot whose answerer this service swaps (the Bot also needs this service: built first, attached after). */
  attach(bot: Bot): void {
    this.bot = bot;
  }

  private get target(): Bot {
    if (!this.bot) throw new Error('RegistryModelService used before attach(bot)');
    return this.bot;
  }

  serving() {
    return this.target.serving.model;
  }

  async list(): Promise<string> {
    const versions = await this.options.registry.list();
    if (versions.length === 0) return 'No model versions yet: train one with /train pretrain.';
    return versions.map(describe).join('\n');
  }

  /**
   * `teamllm model import <folder|file.gguf>`: an open encoder or a Llama-family chat model
   * registered as a version. Everything is checked before a byte is copied (architecture, files,
   * shapes, tokenizer, disk space).
   */
  async importModel(location: string, options: { name?: string; dtype?: ChatDtype; base?: string }, actor: Actor): Promise<string> {
    if (isPeftAdapterFolder(location)) return this.importAdapter(location, options, actor);
    if (options.base) throw new Error(`--base is for LoRA adapter folders (adapter_config.json); ${location} is not one`);
    const inspected = inspectImport(location);
    const { description } = inspected;
    // An encoder is small and read as it was stored; the precision choice is a chat model's.
    if (options.dtype && inspected.kind === 'encoder') throw new Error(`--dtype is for chat models; ${location} is an encoder (${inspected.description.config.architecture}), used as it was stored`);
    const { dtype, ...named } = options;
    const v =
      inspected.kind === 'encoder'
        ? await this.options.registry.registerEncoder(inspected.description, named)
        : await this.options.registry.registerChatModel(inspected.description, { ...named, ...(dtype ? { dtype } : {}) });
    await this.options.store.audit({
      actor: actor.id,
      action: 'model-import',
      detail: { version: v.version, kind: inspected.kind, origin: v.origin ?? location, architecture: v.architecture ?? null, dtype: v.dtype ?? null, licence: v.licence ?? null, parameters: v.numParameters },
    });
    const mib = description.files.reduce((n, f) => n + f.bytes, 0) / 2 ** 20;
    const licence = `Licence: ${description.licence}${description.licence === 'unknown' ? ' (no README front matter or LICENSE file: check the model card before using it)' : ''}.`;
    if (inspected.kind === 'chat') {
      const c = inspected.description.config;
      return [
        `Imported ${v.version}${v.name ? ` "${v.name}"` : ''}: ${c.architecture}, ${v.numParameters.toLocaleString('en-US')} parameters, ${description.dtype}${dtype && dtype !== 'auto' ? ` (served as ${dtype})` : ''}, ${c.layers} layers, ${c.heads}/${c.kvHeads} heads, ${mib.toFixed(1)} MiB copied.`,
        `Chat template: ${inspected.description.hasChatTemplate ? 'yes' : 'none (the folder has no chat_template)'}; end-of-turn ids ${inspected.description.eosIds.join(', ') || 'none declared'}.`,
        licence,
        `Serve it: teamllm model promote ${v.version} (answers through its chat template from the retrieved passages; teamllm model rollback returns to the current model).`,
      ].join('\n');
    }
    const d = inspected.description;
    return [
      `Imported ${v.version}${v.name ? ` "${v.name}"` : ''}: ${d.config.architecture}, ${v.numParameters.toLocaleString('en-US')} parameters, ${d.dtype}, ${d.config.hidden}-dimensional vectors, ${mib.toFixed(1)} MiB copied.`,
      `Pooling: ${d.poolingSource}.`,
      licence,
      `Use it for retrieval: teamllm kb reindex --encoder ${v.version}; compare with teamllm eval retrieval --encoder ${v.version}.`,
    ].join('\n');
  }

  /**
   * `teamllm model export <version> --format hf|gguf|peft <dir>`: an imported chat model written out in
   * the ecosystem's formats (model/import/chat-export.ts), into a new or empty folder.
   */
  async exportModel(version: string, options: { format: ExportFormat; dtype?: ExportDtype; target: string }, actor: Actor): Promise<string> {
    const entry = await this.options.registry.get(version);
    if (!entry) throw new Error(`No model version ${version} (see teamllm model list)`);
    if (entry.kind === 'encoder') throw new Error(`${version} is an imported encoder: export writes imported chat models (--format hf or gguf); the encoder's files are in ${this.options.registry.dir(version)}`);
    if (entry.kind !== 'chat') {
      throw new Error(`${version} was trained here (teamllm's own model, not a Llama-family one): export writes imported chat models (--format hf or gguf); its files (model.safetensors, config.json, tokenizer.json) are in ${this.options.registry.dir(version)}`);
    }
    await this.options.registry.assertIntact(version);
    const result = await exportChatModel(this.options.registry.dir(version), options.format, options.target, { ...(options.dtype ? { dtype: options.dtype } : {}), name: entry.name ?? `teamllm-${version}` });
    await this.options.store.audit({ actor: actor.id, action: 'model-export', detail: { version, format: result.format, dtype: result.dtype, target: path.resolve(options.target) } });
    const mib = result.files.reduce((n, f) => n + f.bytes, 0) / 2 ** 20;
    const check =
      result.format === 'gguf'
        ? `Check it: llama-cli -m ${path.join(result.dir, result.files.find((f) => f.file.endsWith('.gguf'))!.file)} (llama.cpp), or an Ollama Modelfile with FROM and the path (docs/open-chat-models.md).`
        : result.format === 'peft'
          ? `Use it: PEFT's PeftModel.from_pretrained(base, "${result.dir}") or LLaMA-Factory's adapter_name_or_path, on the base model's original weights; teamllm model import ${result.dir} --base <version> reads it back.`
          : `Check it: teamllm model import ${result.dir} gives the same answers; transformers' AutoModelForCausalLM.from_pretrained reads it.`;
    const what = result.format === 'hf' ? 'a Hugging Face folder' : result.format === 'peft' ? "PEFT's LoRA adapter folder" : 'GGUF';
    return [
      `Exported ${version}${entry.name ? ` "${entry.name}"` : ''} as ${what} (${result.dtype}) to ${result.dir}: ${result.files.map((f) => f.file).join(', ')} (${mib.toFixed(1)} MiB).`,
      ...result.notes.map((n) => `Note: ${n}.`),
      `Licence recorded at import: ${entry.licence ?? 'unknown'} (its README/LICENSE files are in the folder).`,
      check,
    ].join('\n');
  }

  /** A PEFT LoRA adapter folder onto an imported chat model version (`--base`): checked to fit it, then registered as a version of its own. */
  private async importAdapter(location: string, options: { name?: string; dtype?: ChatDtype; base?: string }, actor: Actor): Promise<string> {
    const registry = this.options.registry;
    const chats = (await registry.list()).filter((v) => v.kind === 'chat' && v.parent === undefined);
    if (!options.base) throw new Error(`${location} is a LoRA adapter: name the imported model it goes on with --base <version>${chats.length ? ` (imported chat models: ${chats.map((v) => v.version).join(', ')})` : ' (import that model first)'}`);
    if (options.dtype) throw new Error('--dtype is for models; an adapter is served in the precision of its base');
    const base = await registry.get(options.base);
    if (base?.kind !== 'chat') throw new Error(`${options.base} is not an imported chat model${chats.length ? ` (those are ${chats.map((v) => v.version).join(', ')})` : ''}`);
    const peft = readPeftAdapter(location);
    checkPeftFits(peft, fromLlamaConfig(inspectChatModelVersion(registry.dir(options.base)).description.config));
    const v = await registry.registerChatAdapter(location, options.base, options.name ? { name: options.name } : {});
    await this.options.store.audit({ actor: actor.id, action: 'model-import', detail: { version: v.version, kind: 'lora', base: options.base, origin: v.origin ?? location, rank: peft.config.rank, targets: peft.config.targets } });
    return [
      `Imported ${v.version}${v.name ? ` "${v.name}"` : ''}: a LoRA adapter (r=${peft.config.rank}, alpha=${peft.config.alpha}, on ${peft.config.targets.join(', ')}) over ${options.base}${peft.baseModel ? ` (trained on ${peft.baseModel})` : ''}.`,
      `Serve it: teamllm model promote ${v.version} (the base with the adapter merged into its weights).`,
    ].join('\n');
  }

  async promote(version: string, actor: Actor, context: PromotionContext = {}): Promise<string> {
    return this.serialised(() => this.promoteNow(version, actor, context));
  }

  private serialised<T>(work: () => Promise<T>): Promise<T> {
    return this.options.serialise ? this.options.serialise(work) : work();
  }

  private async promoteNow(version: string, actor: Actor, context: PromotionContext): Promise<string> {
    const candidate = await this.options.registry.get(version);
    if (!candidate) throw new Error(`No model version ${version} (see /model list)`);
    // A damaged version is refused here, not after it became the serving one.
    await this.options.registry.assertIntact(version);
    const current = (await this.options.registry.serving())?.version;
    // Already serving (a stage promoted it): the version before it is the one rollback returns to.
    const before = current === version ? await this.options.registry.previous() : current;
    const promoted = await this.options.registry.promote(version);
    await this.activate();
    // A version that did not pass its evaluation gate (or was never evaluated) is served only because an admin said so.
    const override = !context.auto && !candidate.gate?.passed;
    await this.options.store.audit({
      actor: actor.id,
      action: 'promote',
      detail: {
        version,
        previous: before ?? null,
        ...(context.auto ? { auto: true } : {}),
        ...(context.job !== undefined ? { job: context.job } : {}),
        ...(override ? { override: true, gate: candidate.gate ?? null } : {}),
      },
    });
    const note = override
      ? candidate.gate
        ? ` It did not pass its evaluation gate (${candidate.gate.reasons.join('; ') || 'no reason given'}); promoted by hand, recorded in the audit log.`
        : ' It has no evaluation gate result; promoted by hand, recorded in the audit log.'
      : '';
    return `Now answering with ${promoted.version}${before ? ` (was ${before}; /model rollback returns to it)` : ''}.${note}`;
  }

  /**
   * `teamllm model verify [version]`: each version's files against the hashes recorded at
   * registration. `ok` is false when one is damaged.
   */
  async verify(version?: string): Promise<{ ok: boolean; text: string }> {
    const versions = version ? [version] : (await this.options.registry.list()).map((v) => v.version);
    if (versions.length === 0) return { ok: true, text: 'No model versions yet.' };
    const serving = (await this.options.registry.serving())?.version;
    const lines: string[] = [];
    let ok = true;
    for (const v of versions) {
      const check = await this.options.registry.verify(v);
      const tag = v === serving ? ' (serving)' : '';
      if (check.status === 'ok') lines.push(`✓ ${v}${tag}: files match the sha256 recorded at registration`);
      else if (check.status === 'unverified') lines.push(`? ${v}${tag}: unverified (registered before hashes were recorded; they are recorded after its next good load)`);
      else {
        ok = false;
        lines.push(`✗ ${ModelFilesError.from(check, this.options.registry.dir(v)).message}`);
      }
    }
    return { ok, text: lines.join('\n') };
  }

  async rollback(actor: Actor): Promise<string> {
    return this.serialised(() => this.rollbackNow(actor));
  }

  private async rollbackNow(actor: Actor): Promise<string> {
    const before = (await this.options.registry.serving())?.version;
    const restored = await this.options.registry.rollback();
    await this.activate();
    await this.options.store.audit({ actor: actor.id, action: 'rollback', detail: { from: before ?? null, to: restored?.version ?? null } });
    return restored
      ? `Rolled back: answering with ${restored.version} again (was ${before}).`
      : `Rolled back: no model version serves now (was ${before}); answers quote the knowledge base directly.`;
  }

  /**
   * Makes the Bot serve whatever the registry says serves. Also called periodically by `serve`,
   * so a promotion made from the CLI reaches a running bot.
   */
  activate(): Promise<void> {
    // One at a time: `serve` calls this every few seconds, the first start's hand-over and
    // promotions call it too; two loads of the same version at once would waste a model's memory.
    const next = this.activating.then(() => this.activateNow());
    this.activating = next.catch(() => {});
    return next;
  }

  /** Set while the promoted version cannot be served (its files are damaged or missing). */
  get fallback(): ModelFallback | undefined {
    if (!this.refused) return undefined;
    const { createdAt: _, ...fallback } = this.refused;
    return fallback;
  }

  private async activateNow(): Promise<void> {
    const serving = await this.options.registry.serving();
    if (this.refused) {
      // Still the refused version: keep the fallback (its files are not hashed again every few seconds).
      if (serving && serving.version === this.refused.wanted && serving.createdAt === this.refused.createdAt) return;
    } else if (serving?.version === this.active?.version) return;
    const previous = this.active;
    let how: Record<string, unknown> = {};
    if (!serving) {
      this.active = undefined;
      this.dropChat();
      this.refused = undefined;
      this.target.setAnswerer(this.options.fallback);
      await this.served.activate(null);
    } else {
      try {
        how = await this.serve(serving.version);
        this.refused = undefined;
      } catch (err) {
        await this.fallBack(serving, err);
        return;
      }
    }
    this.options.logger.info({ version: serving?.version ?? 'retrieval-only', previous: previous?.version, ...how }, 'serving model changed');
  }

  /** Loads a version and makes the Bot answer with it. */
  private async serve(version: string): Promise<Record<string, unknown>> {
    const entry = await this.options.registry.get(version);
    if (entry?.kind === 'chat') return this.serveChat(entry);
    // Bases nothing serves from any more are freed later, after answers in flight on them finish.
    const served = (await this.served.activate(version))!;
    this.dropChat();
    this.active = { version };
    this.target.setAnswerer(this.options.answererFor(served.model));
    return served.adapter ? { adapterOver: served.base, baseReloaded: served.reloaded } : { reloaded: served.reloaded };
  }

  /**
   * An imported chat model: its files checked against the hashes recorded at import, read (as
   * float32), and served through its chat template. A file that is missing, changed or cannot be
   * read is a ModelFilesError naming it, so the caller falls back as for any other version.
   */
  private async serveChat(entry: ModelVersion): Promise<Record<string, unknown>> {
    const { version } = entry;
    if (!this.options.chatAnswererFor) throw new ModelFilesError(version, 'chat-model.json', 'this bot cannot serve imported chat models');
    await this.options.registry.assertIntact(version);
    const key = `${version}@${entry.createdAt}`;
    let reloaded = false;
    let previous: HeldChatModel | undefined;
    let engine = 'teamllm';
    if (this.chat?.key !== key) {
      const dir = this.options.registry.dir(version);
      let loaded: ServedChat;
      let worker: HeldChatModel | undefined;
      try {
        const llamaCpp = await this.startLlamaCpp(dir, entry);
        const where = this.options.chatWorker ?? true;
        if (llamaCpp) {
          // This thread keeps the tokenizer (templates, fitting, decoding); llama.cpp continues the ids.
          const { description, tokenizer } = inspectChatModelVersion(dir);
          worker = llamaCpp;
          loaded = { description, tokenizer, model: llamaCpp };
          engine = 'llama.cpp';
        } else if (where === false) loaded = loadChatModelVersion(dir);
        else {
          // This thread keeps the tokenizer (templates, fitting, decoding); the worker reads the weights.
          const { description, tokenizer } = inspectChatModelVersion(dir);
          worker = await WorkerChatModel.start({ ...(where === true ? {} : where), dir });
          loaded = { description, tokenizer, model: worker };
        }
      } catch (err) {
        let file = 'chat-model.json';
        try {
          const manifest = readChatManifest(dir);
          file = manifest.from === 'gguf' ? (manifest.file ?? 'model.gguf') : 'model.safetensors';
        } catch {
          // the manifest itself is what failed
        }
        throw new ModelFilesError(version, file, `its files in ${dir} could not be loaded (${(err as Error).message})`);
      }
      // The old worker keeps serving until the new answerer is in place, then finishes its answers in flight.
      previous = this.chat?.worker;
      this.chat = { key, loaded, ...(worker ? { worker } : {}) };
      reloaded = true;
    }
    const answerer = this.options.chatAnswererFor(this.chat.loaded, entry);
    // Trained models nothing serves from any more are freed after answers in flight on them finish.
    await this.served.activate(null);
    this.active = { version };
    this.target.setAnswerer(answerer);
    this.retire(previous);
    return { chat: entry.architecture ?? 'chat', reloaded, ...(reloaded ? { engine } : {}) };
  }

  /**
   * The llama.cpp engine on a version, when TEAMLLM_SERVING_ENGINE asks for it and node-llama-cpp
   * can run here; undefined otherwise (teamllm's engine serves; why is logged once).
   */
  private async startLlamaCpp(dir: string, entry: ModelVersion): Promise<LlamaCppChatModel | undefined> {
    const wanted = this.options.servingEngine;
    if (!wanted || wanted === 'teamllm' || this.llamaCppUnavailable) return undefined;
    const { engine: _, ...options } = wanted;
    const { description } = inspectChatModelVersion(dir);
    let started: Awaited<ReturnType<typeof LlamaCppChatModel.start>>;
    try {
      started = await LlamaCppChatModel.start(dir, description.config.maxPositions, { ...options, name: entry.name ?? `teamllm-${entry.version}` });
    } catch (err) {
      // The version itself is fine (its files were verified): teamllm's engine serves it.
      this.options.logger.error({ version: entry.version, err: (err as Error).message }, `llama.cpp could not serve ${entry.version}; teamllm's own engine serves it`);
      return undefined;
    }
    if ('unavailable' in started) {
      this.llamaCppUnavailable = started.unavailable;
      this.options.logger.warn({ engine: 'llama.cpp', reason: started.unavailable }, `TEAMLLM_SERVING_ENGINE=llama.cpp: ${started.unavailable}; imported chat models are served by teamllm's own engine`);
      return undefined;
    }
    for (const note of started.notes) this.options.logger.warn({ version: entry.version }, `llama.cpp export: ${note}`);
    this.options.logger.info({ version: entry.version, file: started.model.file, exported: started.exported, gpu: started.model.gpu || 'none (CPU)' }, 'llama.cpp serves the imported chat model');
    return started.model;
  }

  /**
   * The promoted version cannot be loaded: the bot keeps answering with the most recent earlier
   * version that loads, else retrieval-only, and says so (log, audit log, /healthz, admin page).
   * The registry is left as it is: rollback, promote or a new version is the operator's decision.
   */
  private async fallBack(wanted: ModelVersion, err: unknown): Promise<void> {
    const reason = err instanceof Error ? err.message : String(err);
    const file = err instanceof ModelFilesError ? err.file : 'model.safetensors';
    let instead: string | null = null;
    for (const version of await this.options.registry.history()) {
      try {
        await this.serve(version);
        instead = version;
        break;
      } catch (next) {
        this.options.logger.warn({ version, err: next instanceof Error ? next.message : String(next) }, 'earlier model version cannot serve either');
      }
    }
    if (instead === null) {
      this.active = undefined;
      this.dropChat();
      this.target.setAnswerer(this.options.fallback);
      await this.served.activate(null).catch(() => undefined);
    }
    this.refused = { wanted: wanted.version, file, reason, serving: instead, since: Date.now(), createdAt: wanted.createdAt };
    this.options.logger.error(
      { version: wanted.version, file, servingInstead: instead ?? 'retrieval-only' },
      `${reason} Answering with ${instead ?? 'retrieval-only answers (quotes from the knowledge base)'} meanwhile.`,
    );
    await this.options.store
      .audit({ actor: 'system', action: 'model-fallback', detail: { version: wanted.version, file, reason, servingInstead: instead } })
      .catch((auditErr: unknown) => this.options.logger.error({ err: auditErr }, 'could not write the model fallback to the audit log'));
  }

  /** Forgets the chat model in memory; its worker ends once the answers already asked of it finish. */
  private dropChat(): void {
    const worker = this.chat?.worker;
    this.chat = undefined;
    this.retire(worker);
  }

  private retire(worker: HeldChatModel | undefined): void {
    if (!worker) return;
    this.retiring.add(worker);
    void worker.exited.then(() => this.retiring.delete(worker));
    worker.retire();
  }

  async close(): Promise<void> {
    this.served.close();
    this.active = undefined;
    const workers = [...this.retiring, ...(this.chat?.worker ? [this.chat.worker] : [])];
    this.chat = undefined;
    this.retiring.clear();
    await Promise.all(workers.map((w) => w.close()));
  }
}
