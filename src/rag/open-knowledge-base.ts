/**
 * The knowledge bases of one data folder, wired for the app:
 *
 *   <home>/kb/local.db          the default knowledge base (SQLite: sources, passages)
 *   <home>/kb/<collection>.db   any other named knowledge base
 *   <home>/embeddings/          the encoder `teamllm train embeddings` trained, and selected.json
 *                               when an imported encoder (`teamllm model import`) is used instead
 *   <home>/chroma/              the bundled Chroma server's data (when CHROMA_URL is unset)
 *
 * Chroma holds the dense vectors, one collection per knowledge base. It is only needed once an
 * encoder is trained (there are no vectors before), so the bundled server starts then — at
 * open, or right after training — and stops on close(). If Chroma cannot be reached (at start, or
 * because it died: a failed query tells), search falls back to BM25 alone at once, the log says
 * so once, and a probe with backoff reattaches the collections when Chroma answers again,
 * writing the vectors of passages added meanwhile (`vectorStore` reports the state for /healthz).
 */
import { existsSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import type { BaseLanguageModel } from '@langchain/core/language_models/base';
import type { ChromaClient } from 'chromadb';
import { silentLogger, type Answerer, type AnswerRequest, type Logger, type ModelInfo } from '../core/index.ts';
import { ChainAnswerer, type ChainAnswererOptions } from './answer-chain.ts';
import { CandidateAnswerer, type CandidateScorer } from './candidate-answerer.ts';
import { ChatModelAnswerer, type ServedChatModel } from './chat-model-answerer.ts';
import type { AnswerabilityRule } from './answerability.ts';
import { chromaClientFor, startChromaServer, type ChromaServer, type StartChromaOptions } from './chroma-server.ts';
import { ChromaVectorStore, collectionName } from './chroma-vector-store.ts';
import type { EncoderTrainingOptions, EncoderTrainingReport } from './encoder-training.ts';
import type { AskedPair } from './contrastive-pairs.ts';
import { LocalEmbeddings, type EmbeddingModelInfo } from './local-embeddings.ts';
import type { DenseEmbeddings } from './dense-embeddings.ts';
import { ImportedEmbeddings, selectedEncoder, selectEncoder } from './imported-embeddings.ts';
import { ModelRegistry } from '../model/registry.ts';
import { LocalKnowledgeBase, type KnowledgeBaseOptions } from './local-knowledge-base.ts';
import type { MetadataFilter } from './metadata.ts';
import { RetrievalOnlyAnswerer } from './retrieval-only-answerer.ts';

export const DEFAULT_KB_NAME = 'default';

/** The SQLite file of a knowledge base of a data folder (what `openKnowledgeBase` opens for that name). */
export function knowledgeBaseFile(home: string, name: string = DEFAULT_KB_NAME): string {
  return join(home, 'kb', name === DEFAULT_KB_NAME ? 'local.db' : `${collectionName(name)}.db`);
}

export interface OpenKnowledgeBaseOptions {
  /** The data folder ($TEAMLLM_HOME). */
  home: string;
  /** An external Chroma server (CHROMA_URL); unset: the bundled one, started when needed. */
  chromaUrl?: string;
  logger?: Logger;
  /** Options for every knowledge base opened (chunk size, fusion weights, URL fetcher). */
  knowledgeBase?: Omit<KnowledgeBaseOptions, 'name' | 'onDenseFailure'>;
  /** Told when the vector store becomes unreachable and when it is back (metrics). */
  observer?: VectorStoreObserver;
  /** How often an unreachable vector store is probed: first after `initialMs`, doubling up to `maxMs`. */
  probe?: { initialMs?: number; maxMs?: number };
  /**
   * Shares the knowledge bases with other processes (PgKnowledgeSync with TEAMLLM_DATABASE_URL):
   * each one opened is attached to it; closed with the rest.
   */
  sync?: { attach(kb: LocalKnowledgeBase): Promise<void>; close(): Promise<void> };
  /** Passed to the bundled Chroma server (tests shorten its restart delay). */
  bundledChroma?: Pick<StartChromaOptions, 'restartDelayMs' | 'maxRestartDelayMs'>;
}

/** The vector store's state as /healthz reports it. */
export interface VectorStoreStatus {
  /** unused: no encoder trained (BM25 is all there is); ok: hybrid search; down: BM25 alone until it is back. */
  state: 'unused' | 'ok' | 'down';
  url?: string;
  bundled?: boolean;
  /** When the state last changed (ms since the epoch). */
  since: number;
  /** Why it is down. */
  reason?: string;
  /** Times it went down since the app started. */
  outages: number;
  /** Times the supervisor restarted the bundled server. */
  restarts: number;
  /** Searches answered by BM25 alone because it was down. */
  lexicalOnlySearches: number;
}

export interface VectorStoreObserver {
  vectorStoreDown?(reason: string): void;
  vectorStoreUp?(downMs: number): void;
}

export interface AnswererOptions {
  /** Any LangChain LLM or chat model; without one, answers quote passages (retrieval-only). */
  llm?: BaseLanguageModel;
  /** Describes `llm` in answer records (required with `llm`). */
  model?: ModelInfo;
  /** Which knowledge base and filter a request may search, e.g. from the channel it came from. */
  scope?: (request: AnswerRequest) => { knowledgeBase?: string; filter?: MetadataFilter } | undefined;
  passages?: number;
  answerability?: AnswerabilityRule;
  /** Chat messages instead of the text prompt (CHAT_TEMPLATE_PROMPT for the project's own model). */
  messages?: ChainAnswererOptions['messages'];
  /** A model that chooses among candidate answers (CandidateAnswerer) instead of generating one. */
  scorer?: CandidateScorer;
  /**
   * An imported chat model that writes the answer from the passages through its own chat template
   * (ChatModelAnswerer), behind the candidate answerer's "don't know" gate. Needs `model`.
   */
  chat?: ServedChatModel;
  /** With `chat`: the most tokens generated. */
  maxTokens?: number;
  /**
   * Without a model: choose among the candidate answers by the rules (the direct answer, then its
   * sentence quoted) instead of quoting the best sentences (RetrievalOnlyAnswerer).
   */
  candidates?: boolean;
}

export interface TrainEmbeddingsOptions {
  training?: EncoderTrainingOptions;
  /**
   * Questions people asked and the passage of an answer they liked (training/feedback-datasets.ts
   * `likedPassages`): the encoder learns the askers' words for the documents' (matched to the
   * passages by source and text; a passage since changed or removed is skipped).
   */
  asked?: AskedPassage[];
  onProgress?: (progress: { step: number; steps: number; loss: number }) => void;
  signal?: AbortSignal;
}

export interface OpenedKnowledgeBases {
  /** The default knowledge base (what `kb add`, `/kb` and answers use unless scoped). */
  kb: LocalKnowledgeBase;
  /** A named knowledge base, with its own SQLite file and Chroma collection (opened once, then cached). */
  get(name: string): Promise<LocalKnowledgeBase>;
  /** The Bot's answerer: the LangChain chain with `llm`, else the retrieval-only fallback. */
  answerer(options?: AnswererOptions): Answerer;
  /** Trains the encoder on every knowledge base's passages, saves it, and re-embeds the open ones. */
  /** `asked`: how many liked answers' passages were found among the passages and learned from. */
  trainEmbeddings(options?: TrainEmbeddingsOptions): Promise<{ info: EmbeddingModelInfo; report: EncoderTrainingReport; reembedded: number; asked: number }>;
  /**
   * Picks up an encoder trained into `<home>/embeddings` by another thread or process (the first
   * start's quickstart trains it in a worker): loads it and connects the open knowledge bases to
   * their Chroma collections. False when there is none or it is the one in use.
   */
  reloadEmbeddings(): Promise<boolean>;
  /**
   * Makes the knowledge bases use an imported encoder (a registry version), or with undefined the
   * trained one again; records the choice and re-embeds the open knowledge bases (others are
   * re-embedded when next opened: their vectors name another encoder).
   */
  useEncoder(version: string | undefined): Promise<{ encoder: string; reembedded: number }>;
  /** The encoder of the dense side (imported or trained), if any. */
  readonly embeddings: DenseEmbeddings | undefined;
  /** Where the vectors live: undefined until an encoder is trained (or when Chroma is unreachable). */
  readonly chroma: { url: string; bundled: boolean } | undefined;
  /** Whether hybrid search works now, or BM25 answers alone because the vector store is down. */
  readonly vectorStore: VectorStoreStatus;
  close(): Promise<void>;
}

export async function openKnowledgeBase(options: OpenKnowledgeBaseOptions): Promise<OpenedKnowledgeBases> {
  const logger = options.logger ?? silentLogger;
  const embeddingsDir = join(options.home, 'embeddings');
  const open = new Map<string, LocalKnowledgeBase>();
  const registry = new ModelRegistry(options.home);
  /** The selected imported encoder, else the trained one; an imported one that cannot load is said once and the trained one used. */
  const loadEmbeddings = async (): Promise<DenseEmbeddings | undefined> => {
    const selected = selectedEncoder(embeddingsDir);
    if (selected) {
      try {
        return await ImportedEmbeddings.load(registry, selected);
      } catch (err) {
        logger.warn({ encoder: selected, err: errorText(err) }, 'the imported encoder selected for retrieval cannot be loaded: using the trained one (teamllm kb reindex --encoder <version> chooses another)');
      }
    }
    return LocalEmbeddings.load(embeddingsDir);
  };
  let embeddings = await loadEmbeddings();
  let server: ChromaServer | undefined;
  let client: ChromaClient | undefined;
  let chroma: { url: string; bundled: boolean } | undefined;

  let status: { state: VectorStoreStatus['state']; since: number; reason?: string } = { state: 'unused', since: Date.now() };
  let outages = 0;
  let probeTimer: NodeJS.Timeout | undefined;
  let closed = false;
  const probeInitial = options.probe?.initialMs ?? 250;
  const probeMax = options.probe?.maxMs ?? 5_000;

  const connect = async (): Promise<ChromaClient> => {
    if (client) return client;
    if (options.chromaUrl) {
      const candidate = chromaClientFor(options.chromaUrl);
      await candidate.heartbeat();
      client = candidate;
      chroma = { url: options.chromaUrl, bundled: false };
    } else {
      server = await startChromaServer({
        path: join(options.home, 'chroma'),
        log: (m) => logger.info({}, m),
        ...options.bundledChroma,
      });
      chroma = { url: server.url, bundled: true };
      client = chromaClientFor(server.url);
    }
    return client;
  };

  /** The vector store failed: BM25 alone everywhere, said once, and probed until it answers. */
  const markDown = (err: unknown) => {
    if (closed) return;
    if (status.state !== 'down') {
      status = { state: 'down', since: Date.now(), reason: errorText(err) };
      outages += 1;
      logger.warn(
        { err: status.reason, chroma: chroma?.url ?? options.chromaUrl ?? '(bundled)' },
        'the vector store (Chroma) is unreachable: answering with BM25 alone until it is back',
      );
      options.observer?.vectorStoreDown?.(status.reason!);
    }
    scheduleProbe(probeInitial);
  };

  const scheduleProbe = (delay: number) => {
    if (probeTimer || closed) return;
    probeTimer = setTimeout(() => {
      void (async () => {
        let back = false;
        try {
          await (await connect()).heartbeat();
          back = true;
          let embedded = 0;
          for (const k of open.values()) embedded += await attachDense(k, false);
          const downMs = Date.now() - status.since;
          status = { state: 'ok', since: Date.now() };
          logger.info({ chroma: chroma?.url, downMs, embedded }, 'the vector store (Chroma) is back: hybrid retrieval resumed');
          options.observer?.vectorStoreUp?.(downMs);
        } catch (err) {
          if (back) status.reason = errorText(err);
          probeTimer = undefined;
          scheduleProbe(Math.min(delay * 2, probeMax));
          return;
        }
        probeTimer = undefined;
      })();
    }, delay);
    probeTimer.unref();
  };

  /**
   * Connects a knowledge base to its Chroma collection; returns how many passages were (re-)embedded.
   * `tolerate`: a failure marks the store down (BM25 alone, probed) instead of throwing.
   */
  const attachDense = async (kb: LocalKnowledgeBase, tolerate = true): Promise<number> => {
    if (!embeddings) return kb.useDense(undefined);
    if (status.state === 'down' && tolerate) return 0;
    try {
      const chromaClient = await connect();
      const store = await ChromaVectorStore.open(chromaClient, collectionName(kb.name), embeddings, { kb: kb.name });
      const reembedded = await kb.useDense({ embeddings, store });
      if (reembedded > 0) logger.info({ kb: kb.name, passages: reembedded, encoder: embeddings.info.id }, 'embedded the knowledge base into Chroma');
      if (status.state === 'unused') status = { state: 'ok', since: Date.now() };
      return reembedded;
    } catch (err) {
      if (!tolerate) throw err;
      markDown(err);
      return 0;
    }
  };

  const fileFor = (name: string) => knowledgeBaseFile(options.home, name);
  const get = async (name: string): Promise<LocalKnowledgeBase> => {
    let kb = open.get(name);
    if (!kb) {
      kb = new LocalKnowledgeBase(fileFor(name), { ...options.knowledgeBase, name, onDenseFailure: markDown });
      open.set(name, kb);
      await attachDense(kb);
      await options.sync?.attach(kb);
    }
    return kb;
  };

  const kb = await get(DEFAULT_KB_NAME);

  return {
    kb,
    get,
    get embeddings() {
      return embeddings;
    },
    get chroma() {
      return chroma;
    },
    get vectorStore(): VectorStoreStatus {
      let lexicalOnlySearches = 0;
      for (const k of open.values()) lexicalOnlySearches += k.lexicalOnlySearches;
      return {
        ...status,
        ...(chroma ? { url: chroma.url, bundled: chroma.bundled } : {}),
        outages,
        restarts: server?.restarts ?? 0,
        lexicalOnlySearches,
      };
    },
    answerer(answerOptions: AnswererOptions = {}): Answerer {
      // The scope may name another knowledge base; those are opened ahead of use by get().
      const kbFor = (request: AnswerRequest) => {
        const name = answerOptions.scope?.(request)?.knowledgeBase;
        return (name && open.get(name)) || kb;
      };
      const filterFor = (request: AnswerRequest) => answerOptions.scope?.(request)?.filter;
      if (answerOptions.chat) {
        if (!answerOptions.model) throw new Error('answerer({ chat }) also needs { model } to describe it in answer records');
        const { chat, model } = answerOptions;
        return scopedAnswerer(model, (request) =>
          new ChatModelAnswerer({
            kb: kbFor(request),
            chat,
            model,
            filterFor,
            logger,
            ...(answerOptions.passages !== undefined ? { passages: answerOptions.passages } : {}),
            ...(answerOptions.maxTokens !== undefined ? { maxTokens: answerOptions.maxTokens } : {}),
          }).answer(request),
        );
      }
      // Chosen among the passages' spans: by the model's scorer and its selector, or by the rules alone.
      if (answerOptions.scorer || (answerOptions.candidates && !answerOptions.llm)) {
        const { scorer } = answerOptions;
        const answerer = (base: LocalKnowledgeBase) =>
          new CandidateAnswerer({ kb: base, ...(scorer ? { scorer } : {}), filterFor, logger, ...(answerOptions.passages !== undefined ? { passages: answerOptions.passages } : {}) });
        return {
          // A getter: without a scorer the name says whether an encoder is in use, which training can change.
          get model() {
            return answerer(kb).model;
          },
          answer: (request) => answerer(kbFor(request)).answer(request),
        };
      }
      if (answerOptions.llm) {
        if (!answerOptions.model) throw new Error('answerer({ llm }) also needs { model } to describe it in answer records');
        const { llm, model } = answerOptions;
        return scopedAnswerer(model, (request) =>
          new ChainAnswerer({ kb: kbFor(request), llm, model, filterFor, ...pick(answerOptions) }).answer(request),
        );
      }
      return {
        // A getter: the name says whether an encoder is in use, which training can change.
        get model() {
          return new RetrievalOnlyAnswerer(kb).model;
        },
        answer: (request) => new RetrievalOnlyAnswerer(kbFor(request), { filterFor, ...pick(answerOptions) }).answer(request),
      };
    },
    async trainEmbeddings(trainOptions: TrainEmbeddingsOptions = {}) {
      const { trainEncoder } = await import('./encoder-training.ts');
      const all = await allKnowledgeBases(options.home, open, fileFor);
      const passages = all.flatMap((k) => k.passages());
      const sources = (await Promise.all(all.map((k) => k.list()))).reduce((n, list) => n + list.length, 0);
      for (const k of all) if (!open.has(k.name)) k.close();
      const asked = askedPairs(passages, trainOptions.asked ?? []);
      const { encoder, report } = await trainEncoder(passages, {
        ...trainOptions.training,
        asked,
        ...(trainOptions.onProgress ? { onProgress: trainOptions.onProgress } : {}),
        ...(trainOptions.signal ? { signal: trainOptions.signal } : {}),
      });
      const trained = LocalEmbeddings.fromTraining(encoder, report, { sources, passages: passages.length });
      trained.save(embeddingsDir);
      // Training an encoder means using it: an imported one selected before is set aside.
      selectEncoder(embeddingsDir, undefined);
      embeddings = trained;
      logger.info({ encoder: trained.info.id, passages: passages.length, seconds: report.seconds }, 'trained the embedding model');
      let reembedded = 0;
      for (const k of open.values()) reembedded += await attachDense(k);
      return { info: trained.info, report, reembedded, asked: asked.length };
    },
    async useEncoder(version: string | undefined) {
      const next = version === undefined ? LocalEmbeddings.load(embeddingsDir) : await ImportedEmbeddings.load(registry, version);
      if (!next) throw new Error('no trained encoder in this home: train one with `teamllm train embeddings`, or name an imported version');
      selectEncoder(embeddingsDir, version);
      embeddings = next;
      let reembedded = 0;
      for (const k of open.values()) reembedded += await attachDense(k, false);
      logger.info({ encoder: next.info.id, reembedded }, 'knowledge bases re-embedded with the chosen encoder');
      return { encoder: next.info.id, reembedded };
    },
    async reloadEmbeddings() {
      const found = await loadEmbeddings();
      if (!found || found.info.id === embeddings?.info.id) return false;
      embeddings = found;
      for (const k of open.values()) await attachDense(k);
      logger.info({ encoder: found.info.id }, 'using the newly trained embedding model');
      return true;
    },
    async close() {
      closed = true;
      if (probeTimer) clearTimeout(probeTimer);
      await options.sync?.close();
      for (const k of open.values()) k.close();
      open.clear();
      await server?.stop();
    },
  };
}

function pick(o: AnswererOptions): { passages?: number; answerability?: AnswerabilityRule; messages?: ChainAnswererOptions['messages'] } {
  return {
    ...(o.passages !== undefined ? { passages: o.passages } : {}),
    ...(o.answerability ? { answerability: o.answerability } : {}),
    ...(o.messages ? { messages: o.messages } : {}),
  };
}

function scopedAnswerer(model: ModelInfo, answer: Answerer['answer']): Answerer {
  return { model, answer };
}

/** The SQLite file of every knowledge base of a home (<home>/kb/*.db), in name order. */
export function knowledgeBaseFiles(home: string): string[] {
  const dir = join(home, 'kb');
  return existsSync(dir)
    ? readdirSync(dir)
        .filter((f) => f.endsWith('.db'))
        .sort()
        .map((f) => join(dir, f))
    : [];
}

/** The open knowledge bases plus any others with a file under <home>/kb (opened read-only for training). */
async function allKnowledgeBases(home: string, open: Map<string, LocalKnowledgeBase>, fileFor: (name: string) => string): Promise<LocalKnowledgeBase[]> {
  const known = new Set([...open.keys()].map(fileFor));
  const others = knowledgeBaseFiles(home)
    .filter((f) => !known.has(f))
    .map((f) => new LocalKnowledgeBase(f));
  return [...open.values(), ...others];
}

/**
 * `teamllm train embeddings` outside a running app: opens the home's knowledge bases, trains the
 * encoder on all their passages, re-embeds them into Chroma, closes everything.
 */
export async function trainEmbeddings(
  options: OpenKnowledgeBaseOptions & TrainEmbeddingsOptions,
): Promise<{ info: EmbeddingModelInfo; report: EncoderTrainingReport; reembedded: number; asked: number }> {
  const opened = await openKnowledgeBase(options);
  try {
    return await opened.trainEmbeddings(options);
  } finally {
    await opened.close();
  }
}

/** A question and the passage (its source and text, as the answer record keeps it) of an answer people liked. */
export interface AskedPassage {
  question: string;
  source: string;
  text: string;
}

/**
 * The liked answers' passages as indices into the training passages: the same source and text (a
 * chunk re-split since then is found by containment either way), one pair per question and passage.
 */
export function askedPairs(passages: readonly { source: string; text: string }[], asked: readonly AskedPassage[]): AskedPair[] {
  const bySource = new Map<string, number[]>();
  passages.forEach((p, i) => bySource.set(p.source, [...(bySource.get(p.source) ?? []), i]));
  const seen = new Set<string>();
  const out: AskedPair[] = [];
  for (const a of asked) {
    const text = a.text.trim();
    if (!text) continue;
    const same = bySource.get(a.source) ?? [];
    const at = same.find((i) => passages[i]!.text.trim() === text) ?? same.find((i) => passages[i]!.text.includes(text) || text.includes(passages[i]!.text.trim()));
    const key = `${a.question}\u0000${at}`;
    if (at === undefined || seen.has(key)) continue;
    seen.add(key);
    out.push({ query: a.question, passage: at });
  }
  return out;
}

function errorText(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
