import { Counter, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import type { AnswerOutcome, BotObserver, Platform, Vote } from '../core/index.ts';

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

  constructor(defaultMetrics = true) {
    if (defaultMetrics) collectDefaultMetrics({ register: this.registry, prefix: 'teamllm_' });
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
