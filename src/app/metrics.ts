import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import type { AnswerOutcome, BotObserver, Platform, Vote } from '../core/index.ts';

export interface Degradation {
  vectorStoreDown: boolean;
  modelFallback: boolean;
  lexicalOnlySearches: number;
  chromaRestarts: number;
}

/** Prometheus metrics of one process, served at GET /metrics. */
export class Metrics implements BotObserver {
  readonly registry = new Registry();
  readonly httpRequests = new Counter({
    name: 'teamllm_http_requests_total',
    help: 'HTTP requests by route and status',
    labelNames: ['method', 'route', 'status'],
    registers: [this.registry],
  });
  private readonly answers = new Counter({ name: 'teamllm_answers_total', help: 'Answers by platform and outcome', labelNames: ['platform', 'outcome'], registers: [this.registry] });
  private readonly latency = new Histogram({
    name: 'teamllm_answer_latency_seconds',
    help: 'Time from question to final answer',
    labelNames: ['platform'],
    buckets: [0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60],
    registers: [this.registry],
  });
  private readonly feedbacks = new Counter({ name: 'teamllm_feedback_total', help: 'Votes by platform and value', labelNames: ['platform', 'vote'], registers: [this.registry] });
  private readonly duplicates = new Counter({ name: 'teamllm_duplicate_events_total', help: 'Redelivered events dropped', labelNames: ['platform'], registers: [this.registry] });
  private readonly limited = new Counter({ name: 'teamllm_rate_limited_total', help: 'Questions refused by the per-user rate limit', labelNames: ['platform'], registers: [this.registry] });
  private readonly commands = new Counter({ name: 'teamllm_commands_total', help: 'Commands by name and whether they were allowed', labelNames: ['platform', 'command', 'allowed'], registers: [this.registry] });

  /** Which parts run degraded (1) and for how long: read from the runtime at each scrape. */
  private degradation: (() => Degradation) | undefined;
  private readonly degraded = new Gauge({
    name: 'teamllm_degraded',
    help: 'Parts running degraded (1): vector_store (answers use BM25 alone), model (the promoted version is refused; an earlier one or retrieval-only answers)',
    labelNames: ['part'],
    registers: [this.registry],
    collect: () => {
      const d = this.degradation?.();
      this.degraded.set({ part: 'vector_store' }, d?.vectorStoreDown ? 1 : 0);
      this.degraded.set({ part: 'model' }, d?.modelFallback ? 1 : 0);
    },
  });
  private readonly vectorStoreOutages = new Counter({
    name: 'teamllm_vector_store_outages_total',
    help: 'Times the vector store (Chroma) became unreachable',
    registers: [this.registry],
  });
  private readonly lexicalOnly = new Counter({
    name: 'teamllm_lexical_only_searches_total',
    help: 'Searches answered by BM25 alone because the vector store was unreachable',
    registers: [this.registry],
    collect: () => {
      // The knowledge bases count; the counter catches up with them at each scrape.
      const total = this.degradation?.().lexicalOnlySearches ?? 0;
      if (total > this.lexicalOnlySeen) this.lexicalOnly.inc(total - this.lexicalOnlySeen);
      this.lexicalOnlySeen = Math.max(total, this.lexicalOnlySeen);
    },
  });
  private lexicalOnlySeen = 0;
  private readonly chromaRestarts: Gauge = new Gauge({
    name: 'teamllm_chroma_restarts',
    help: 'Times the bundled Chroma server was restarted after it died',
    registers: [this.registry],
    collect: (): void => {
      this.chromaRestarts.set(this.degradation?.().chromaRestarts ?? 0);
    },
  });

  constructor(defaultMetrics = true) {
    if (defaultMetrics) collectDefaultMetrics({ register: this.registry, prefix: 'teamllm_' });
  }

  /** Where the degraded parts are read from (the runtime wires its knowledge base and model service). */
  watch(degradation: () => Degradation): void {
    this.degradation = degradation;
  }

  vectorStoreDown(): void {
    this.vectorStoreOutages.inc();
  }

  answer(platform: Platform, outcome: AnswerOutcome, seconds: number): void {
    this.answers.inc({ platform, outcome });
    this.latency.observe({ platform }, seconds);
  }

  feedback(platform: Platform, vote: Vote | 0): void {
    this.feedbacks.inc({ platform, vote: vote === 1 ? 'up' : vote === -1 ? 'down' : 'withdrawn' });
  }

  duplicate(platform: Platform): void {
    this.duplicates.inc({ platform });
  }

  rateLimited(platform: Platform): void {
    this.limited.inc({ platform });
  }

  command(platform: Platform, name: string, allowed: boolean): void {
    this.commands.inc({ platform, command: name, allowed: String(allowed) });
  }
}
