import { existsSync, readFileSync } from 'node:fs';
import { isIP } from 'node:net';
import { join, resolve } from 'node:path';
import { parse as parseYaml } from 'yaml';
import { z } from 'zod';

/**
 * Configuration comes from the environment and, optionally, a YAML/JSON file holding the same
 * keys (environment wins). Every key is checked at start, and a bad one is named in the error.
 */

const bool = z.enum(['true', 'false', '1', '0', 'yes', 'no']).transform((v) => ['true', '1', 'yes'].includes(v));
const int = (min: number, max: number) => z.coerce.number().int().min(min).max(max);
const url = z.url();
const PLATFORM_ADAPTERS = ['slack', 'feishu', 'wecom'] as const;
const ADAPTERS = ['web', ...PLATFORM_ADAPTERS] as const;
export type AdapterName = (typeof ADAPTERS)[number];

interface KeySpec {
  schema: z.ZodType;
  secret?: boolean;
  help: string;
}

/** Every configuration key, with its check; docs/configuration.md lists each one (a test checks it). */
export const CONFIG_KEYS = {
  TEAMLLM_HOME: { schema: z.string().min(1), help: 'data folder (stores, models, knowledge base); default ./.teamllm' },
  TEAMLLM_PORT: { schema: int(0, 65535), help: 'HTTP port of `teamllm serve`; default 3000' },
  TEAMLLM_HOST: { schema: z.string().min(1), help: 'interface to listen on; default 127.0.0.1 (0.0.0.0 to accept platform callbacks from outside)' },
  TEAMLLM_ADAPTERS: {
    schema: z.string().transform((s, ctx) => {
      const names = s.split(',').map((x) => x.trim()).filter(Boolean);
      for (const n of names) if (!(ADAPTERS as readonly string[]).includes(n)) ctx.addIssue({ code: 'custom', message: `unknown adapter "${n}" (known: ${ADAPTERS.join(', ')})` });
      return names as AdapterName[];
    }),
    help: 'comma list of web,slack,feishu,wecom; default: web plus every platform whose credentials are set',
  },
  TEAMLLM_ADMINS: {
    schema: z.string().transform((s, ctx) => {
      const ids = s.split(',').map((x) => x.trim()).filter(Boolean);
      for (const id of ids) if (!/^(slack|feishu|wecom|web|console):\S+$/.test(id)) ctx.addIssue({ code: 'custom', message: `"${id}" is not platform:userId (platforms: slack, feishu, wecom, web, console)` });
      return ids;
    }),
    help: 'comma list of platform:userId who may train, promote, delete and ingest',
  },
  TEAMLLM_ADMIN_TOKEN: { schema: z.string().min(16, 'must be at least 16 characters'), secret: true, help: 'bearer token that makes a web/API caller an admin' },
  TEAMLLM_PUBLIC_URL: {
    schema: z.string().url().refine((u) => /^https?:\/\//.test(u), 'must be an http(s) URL').transform((u) => u.replace(/\/+$/, '')),
    help: 'the URL people reach this server at (e.g. https://teamllm.example.com): chat links to the admin page (loss curves) on platforms that cannot take images',
  },
  TEAMLLM_TRUSTED_PROXIES: {
    schema: z.string().transform((s, ctx) => {
      const list = s.split(',').map((x) => x.trim()).filter(Boolean);
      for (const a of list) if (!isIP(a)) ctx.addIssue({ code: 'custom', message: `"${a}" is not an IP address` });
      return list;
    }),
    help: 'comma list of the reverse proxies\' IP addresses: only from them is X-Forwarded-For read for the client address, and the single sign-on user header believed; default none',
  },
  TEAMLLM_AUTH_USER_HEADER: {
    schema: z.string().regex(/^[A-Za-z0-9-]{1,64}$/, 'must be a header name').transform((h) => h.toLowerCase()),
    help: 'header an authenticating proxy (single sign-on) sets to the signed-in user, e.g. X-Auth-Request-Email; believed only from TEAMLLM_TRUSTED_PROXIES; unset: web users are anonymous sessions',
  },
  TEAMLLM_SERVICE_TOKENS: {
    schema: z.string().transform((s, ctx) => {
      const tokens: Record<string, string> = {};
      for (const entry of s.split(',').map((x) => x.trim()).filter(Boolean)) {
        const m = /^([a-zA-Z0-9._-]{1,64})=(\S{16,})$/.exec(entry);
        if (!m) ctx.addIssue({ code: 'custom', message: 'each entry must be name=token with a token of at least 16 characters' });
        else tokens[m[1]!] = m[2]!;
      }
      return tokens;
    }),
    secret: true,
    help: 'comma list of name=token: a caller sending Authorization: Bearer <token> is the service <name> and may say which `user` it asks for',
  },
  TEAMLLM_ALLOWED_ORIGINS: {
    schema: z.string().transform((s, ctx) => {
      const list = s.split(',').map((x) => x.trim().replace(/\/+$/, '')).filter(Boolean);
      for (const o of list) if (!/^https?:\/\/[^/\s]+$/.test(o)) ctx.addIssue({ code: 'custom', message: `"${o}" is not an origin (scheme://host[:port])` });
      return list;
    }),
    help: 'comma list of other origins whose pages may post to /api/* (a browser request from any other origin is refused); default: this host only',
  },
  TEAMLLM_ADMIN_SESSION_HOURS: { schema: z.coerce.number().positive().max(24 * 365), help: 'how long an admin page login lasts; default 12' },
  TEAMLLM_AUDIT_RETENTION_DAYS: { schema: int(1, 36_500), help: 'how long audit entries and refused-command counts are kept; default 365' },
  TEAMLLM_LOG_LEVEL: { schema: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']), help: 'default info' },
  TEAMLLM_RATE_PER_MINUTE: { schema: int(1, 10_000), help: 'questions a user may ask per minute; default 10' },
  TEAMLLM_RATE_BURST: { schema: int(1, 10_000), help: 'questions a user may ask at once; default 5' },
  TEAMLLM_MEMORY_TURNS: { schema: int(0, 200), help: 'conversation turns remembered per thread; default 8' },
  TEAMLLM_MEMORY_CHARS: { schema: int(0, 1_000_000), help: 'characters of history given to the answerer; default 4000' },
  TEAMLLM_ANSWER_DECODING: {
    schema: z.enum(['candidates', 'model', 'extractive', 'free']),
    help: "how the bot's own model answers: candidates (default: it chooses among answers proposed from the retrieved passages), or it generates: model (as its fine-tuning meta says), extractive (only verbatim spans of the passages) or free",
  },
  TEAMLLM_CHAT_MODEL_THREAD: {
    schema: z.enum(['worker', 'main']),
    help: "where an imported chat model runs: worker (default: a worker thread, so generation never holds the bot's event loop) or main (the bot's own thread)",
  },
  TEAMLLM_SERVING_ENGINE: {
    schema: z.enum(['teamllm', 'llama.cpp']),
    help: "what generates an imported chat model's answers: teamllm (default: its own engine, the one that trains) or llama.cpp (node-llama-cpp on the version's GGUF export, its CUDA/Vulkan/Metal build where installed; teamllm's engine when node-llama-cpp is not installed)",
  },
  TEAMLLM_CHANNEL_KB: {
    schema: z.string().transform((s, ctx) => {
      const bindings: Record<string, string> = {};
      for (const entry of s.split(',').map((x) => x.trim()).filter(Boolean)) {
        const m = /^((?:slack|feishu|wecom|web|console):[^=\s]+)=([a-zA-Z0-9._-]{1,64})$/.exec(entry);
        if (!m) ctx.addIssue({ code: 'custom', message: `"${entry}" is not platform:channel=knowledgeBase` });
        else bindings[m[1]!] = m[2]!;
      }
      return bindings;
    }),
    help: 'comma list of platform:channel=name binding a channel to a named knowledge base (`teamllm kb add --kb name`); others use the default one',
  },
  TEAMLLM_SAMPLE_KB: { schema: bool, help: 'load examples/handbook when the knowledge base is empty; default true' },
  TEAMLLM_BACKEND: { schema: z.enum(['tensorflow', 'wasm', 'cpu', 'native']), help: 'tensor backend; default: the fastest that loads' },
  CHROMA_URL: { schema: url, help: 'Chroma server to use; unset: the bundled local one' },
  TEAMLLM_DATABASE_URL: {
    schema: z.string().regex(/^postgres(ql)?:\/\//i, 'must be a postgres:// (or postgresql://) URL'),
    secret: true,
    help: 'PostgreSQL connection string (postgres://user:password@host:5432/db): answers, votes, conversations, audit log, jobs, event dedupe and rate limits are shared by every process using it; unset: SQLite under TEAMLLM_HOME',
  },
  TEAMLLM_DATABASE_POOL_SIZE: { schema: int(1, 1000), help: 'connections each process keeps to PostgreSQL; default 10' },
  TEAMLLM_MODELS_DIR: {
    schema: z.string().min(1),
    help: 'a folder shared by every process (network file system) for training job run folders (checkpoints), so another process can resume a job whose process died; default TEAMLLM_HOME/runs',
  },
  TEAMLLM_JOB_LEASE_SECONDS: {
    schema: int(2, 86_400),
    help: "with TEAMLLM_DATABASE_URL: how long a training job's lease lasts without renewal (renewed every third of it); another process takes over a job whose process died this long after the last renewal; default 60",
  },
  TEAMLLM_QUICKSTART: {
    schema: z.enum(['auto', 'off']),
    help: 'auto: when no model is serving and none is cached, `teamllm serve` trains the quickstart model in the background while it already answers retrieval-only, then hands over to it (docs/quickstart.md); off: never (bring your own model, or retrieval-only); default auto',
  },
  TEAMLLM_QUICKSTART_RECIPE: {
    schema: z.string().min(1),
    help: 'the quickstart recipe: default, tiny (tests), or a YAML/JSON file of overrides (`extends: default`); a changed recipe trains again',
  },
  TEAMLLM_QUICKSTART_DOCS: {
    schema: z.string().min(1),
    help: "a folder of the company's own documents (md, txt, html, pdf, docx; recursively) that the quickstart trains on and puts into the knowledge base instead of the sample handbook (`teamllm quickstart --docs DIR` sets it for one run; `serve` keeps the documents of the last such run); a changed folder trains again",
  },
  TEAMLLM_QUICKSTART_QUESTIONS: {
    schema: z.string().min(1),
    help: 'a question set (JSONL: question, answer or must_contain, split) for the quickstart\'s promotion gate: its `test` split, else all of it ("UNANSWERABLE" rows skipped); unset with TEAMLLM_QUICKSTART_DOCS: generated questions of held-out passages',
  },
  SLACK_BOT_TOKEN: { schema: z.string().startsWith('xoxb-', 'must start with xoxb-'), secret: true, help: 'Slack bot token' },
  SLACK_SIGNING_SECRET: { schema: z.string().min(8), secret: true, help: 'Slack signing secret' },
  SLACK_APP_TOKEN: { schema: z.string().startsWith('xapp-', 'must start with xapp-'), secret: true, help: 'Slack app-level token: Socket Mode when set' },
  SLACK_API_URL: { schema: url, help: 'base of the Slack Web API; default https://slack.com/api/' },
  FEISHU_APP_ID: { schema: z.string().min(1), help: 'Feishu/Lark app id' },
  FEISHU_APP_SECRET: { schema: z.string().min(1), secret: true, help: 'Feishu/Lark app secret' },
  FEISHU_VERIFICATION_TOKEN: { schema: z.string().min(1), secret: true, help: 'event verification token' },
  FEISHU_ENCRYPT_KEY: { schema: z.string().min(1), secret: true, help: 'event encrypt key' },
  FEISHU_DOMAIN: { schema: z.string().regex(/^(feishu|lark|https?:\/\/\S+)$/, 'must be feishu, lark or a base URL'), help: 'feishu, lark or a base URL; default feishu' },
  FEISHU_MODE: { schema: z.enum(['webhook', 'ws']), help: 'webhook (HTTP callbacks) or ws (long connection); default webhook' },
  WECOM_CORP_ID: { schema: z.string().min(1), help: 'WeCom corp id' },
  WECOM_AGENT_ID: { schema: z.string().regex(/^\d+$/, 'must be a number'), help: 'WeCom self-built app agent id' },
  WECOM_SECRET: { schema: z.string().min(1), secret: true, help: 'WeCom app secret' },
  WECOM_TOKEN: { schema: z.string().min(1), secret: true, help: 'callback token' },
  WECOM_ENCODING_AES_KEY: { schema: z.string().regex(/^[A-Za-z0-9]{43}$/, 'must be the 43-character EncodingAESKey'), secret: true, help: 'callback EncodingAESKey' },
  FEISHU_REQUEST_WINDOW_SECONDS: { schema: int(10, 86_400), help: 'callbacks whose X-Lark-Request-Timestamp is further than this from now (either way) are refused; default 300' },
  WECOM_REQUEST_WINDOW_SECONDS: { schema: int(10, 86_400), help: 'callbacks whose signed timestamp is further than this from now (either way) are refused; default 300' },
  WECOM_API_BASE: { schema: url, help: 'WeCom API base; default https://qyapi.weixin.qq.com' },
  WECOM_MESSAGE_FORMAT: { schema: z.enum(['markdown', 'text']), help: 'markdown (WeCom app) or text (members on the WeChat plug-in, which cannot show markdown); default markdown' },
} satisfies Record<string, KeySpec>;

export type ConfigKey = keyof typeof CONFIG_KEYS;

/** What each platform needs before its adapter can start. */
export const REQUIRED_FOR: Record<(typeof PLATFORM_ADAPTERS)[number], ConfigKey[]> = {
  slack: ['SLACK_BOT_TOKEN', 'SLACK_SIGNING_SECRET'],
  feishu: ['FEISHU_APP_ID', 'FEISHU_APP_SECRET'],
  wecom: ['WECOM_CORP_ID', 'WECOM_AGENT_ID', 'WECOM_SECRET', 'WECOM_TOKEN', 'WECOM_ENCODING_AES_KEY'],
};

export interface Config {
  home: string;
  port: number;
  host: string;
  adapters: AdapterName[];
  admins: string[];
  adminToken?: string;
  /** Base URL for links to this server in chat (no trailing slash). */
  publicUrl?: string;
  logLevel: string;
  /** Web identity and request checks (docs/configuration.md "Web identity"). */
  web: {
    trustedProxies: string[];
    authUserHeader?: string;
    serviceTokens: Record<string, string>;
    allowedOrigins: string[];
    adminSessionMs: number;
  };
  auditRetentionDays: number;
  rateLimit: { perMinute: number; burst: number };
  memory: { maxTurns: number; maxChars: number };
  /** How the bot's own model decodes answers ('model': as its SFT meta says; src/model/answer-settings.ts). */
  answerDecoding: 'candidates' | 'model' | 'extractive' | 'free';
  /** Where an imported chat model's forward runs: a worker thread (default) or the main thread. */
  chatModelThread: 'worker' | 'main';
  /** What generates an imported chat model's answers (TEAMLLM_SERVING_ENGINE). */
  servingEngine: 'teamllm' | 'llama.cpp';
  sampleKnowledgeBase: boolean;
  /** `platform:channel` -> knowledge base name. */
  channelKnowledgeBases: Record<string, string>;
  backend?: string;
  chromaUrl?: string;
  /** PostgreSQL (TEAMLLM_DATABASE_URL): the store shared by several processes; unset: SQLite. */
  database?: { url: string; poolSize: number };
  /** A folder shared by every process for job run folders (TEAMLLM_MODELS_DIR, absolute). */
  modelsDir?: string;
  /** A shared store's training job lease (TEAMLLM_JOB_LEASE_SECONDS), ms; unset: the job runner's default (60 s). */
  jobLeaseMs?: number;
  /** First-start training (src/app/quickstart.ts). */
  quickstart: 'auto' | 'off';
  /** The company's documents the quickstart trains on instead of the sample handbook (absolute). */
  quickstartDocs?: string;
  /** The quickstart's question set for its gate (absolute). */
  quickstartQuestions?: string;
  /** Every key as given, for adapters to read their own (SLACK_*, FEISHU_*, WECOM_*). */
  values: Partial<Record<ConfigKey, string>>;
  /** Where the file came from, when one was read. */
  file?: string;
}

export class ConfigError extends Error {
  constructor(readonly problems: string[]) {
    super(`Invalid configuration:\n${problems.map((p) => `  - ${p}`).join('\n')}`);
    this.name = 'ConfigError';
  }
}

export interface LoadConfigOptions {
  env?: NodeJS.ProcessEnv;
  file?: string;
  cwd?: string;
  overrides?: Partial<Record<ConfigKey, string>>;
}

function findConfigFile(options: LoadConfigOptions, env: NodeJS.ProcessEnv): string | undefined {
  const cwd = options.cwd ?? process.cwd();
  const explicit = options.file ?? env.TEAMLLM_CONFIG;
  if (explicit) {
    const path = resolve(cwd, explicit);
    if (!existsSync(path)) throw new ConfigError([`config file ${path} does not exist`]);
    return path;
  }
  const home = resolve(cwd, env.TEAMLLM_HOME ?? '.teamllm');
  return [join(cwd, 'teamllm.config.yaml'), join(cwd, 'teamllm.config.json'), join(home, 'config.yaml')].find((p) => existsSync(p));
}

export function loadConfig(options: LoadConfigOptions = {}): Config {
  const env = options.env ?? process.env;
  const file = findConfigFile(options, env);
  const fromFile: Record<string, unknown> = {};
  if (file) {
    let parsed: unknown;
    try {
      parsed = parseYaml(readFileSync(file, 'utf8'));
    } catch (err) {
      throw new ConfigError([`config file ${file} is not valid YAML/JSON: ${(err as Error).message}`]);
    }
    if (parsed !== null && parsed !== undefined) {
      if (typeof parsed !== 'object' || Array.isArray(parsed)) throw new ConfigError([`config file ${file} must be a mapping of KEY: value`]);
      Object.assign(fromFile, parsed);
    }
  }
  const problems: string[] = [];
  for (const key of Object.keys(fromFile)) {
    if (!(key in CONFIG_KEYS)) problems.push(`${key} (in ${file}) is not a known key`);
  }
  const values: Partial<Record<ConfigKey, string>> = {};
  const parsed: Partial<Record<ConfigKey, unknown>> = {};
  for (const [key, spec] of Object.entries(CONFIG_KEYS) as [ConfigKey, KeySpec][]) {
    const raw = options.overrides?.[key] ?? env[key] ?? fromFile[key];
    if (raw === undefined || raw === '') continue;
    const origin = options.overrides?.[key] !== undefined ? 'command line' : env[key] !== undefined ? 'environment' : `config file ${file}`;
    const text = String(raw);
    const result = spec.schema.safeParse(text);
    if (!result.success) {
      const shown = spec.secret ? '[redacted]' : JSON.stringify(text);
      problems.push(`${key} (from ${origin}) ${result.error.issues.map((i) => i.message).join('; ')}; got ${shown}`);
      continue;
    }
    values[key] = text;
    parsed[key] = result.data;
  }

  const configured = PLATFORM_ADAPTERS.filter((p) => REQUIRED_FOR[p].some((k) => values[k] !== undefined));
  const adapters = (parsed.TEAMLLM_ADAPTERS as AdapterName[] | undefined) ?? ['web', ...configured];
  for (const adapter of adapters) {
    if (adapter === 'web') continue;
    const missing = REQUIRED_FOR[adapter].filter((k) => values[k] === undefined);
    if (missing.length > 0) problems.push(`the ${adapter} adapter is enabled but ${missing.join(', ')} ${missing.length > 1 ? 'are' : 'is'} not set`);
  }
  if (adapters.includes('feishu') && values.FEISHU_MODE !== 'ws' && !values.FEISHU_VERIFICATION_TOKEN && !values.FEISHU_ENCRYPT_KEY) {
    // Without either, anyone who finds the callback URL could post events as any user.
    problems.push('the feishu adapter in webhook mode needs FEISHU_VERIFICATION_TOKEN or FEISHU_ENCRYPT_KEY to check callbacks');
  }
  if (problems.length > 0) throw new ConfigError(problems);

  const cwd = options.cwd ?? process.cwd();
  return {
    home: resolve(cwd, (parsed.TEAMLLM_HOME as string | undefined) ?? '.teamllm'),
    port: (parsed.TEAMLLM_PORT as number | undefined) ?? 3000,
    host: (parsed.TEAMLLM_HOST as string | undefined) ?? '127.0.0.1',
    adapters,
    admins: (parsed.TEAMLLM_ADMINS as string[] | undefined) ?? [],
    ...(parsed.TEAMLLM_ADMIN_TOKEN ? { adminToken: parsed.TEAMLLM_ADMIN_TOKEN as string } : {}),
    ...(parsed.TEAMLLM_PUBLIC_URL ? { publicUrl: parsed.TEAMLLM_PUBLIC_URL as string } : {}),
    logLevel: (parsed.TEAMLLM_LOG_LEVEL as string | undefined) ?? 'info',
    web: {
      trustedProxies: (parsed.TEAMLLM_TRUSTED_PROXIES as string[] | undefined) ?? [],
      ...(parsed.TEAMLLM_AUTH_USER_HEADER ? { authUserHeader: parsed.TEAMLLM_AUTH_USER_HEADER as string } : {}),
      serviceTokens: (parsed.TEAMLLM_SERVICE_TOKENS as Record<string, string> | undefined) ?? {},
      allowedOrigins: (parsed.TEAMLLM_ALLOWED_ORIGINS as string[] | undefined) ?? [],
      adminSessionMs: ((parsed.TEAMLLM_ADMIN_SESSION_HOURS as number | undefined) ?? 12) * 3600 * 1000,
    },
    auditRetentionDays: (parsed.TEAMLLM_AUDIT_RETENTION_DAYS as number | undefined) ?? 365,
    rateLimit: {
      perMinute: (parsed.TEAMLLM_RATE_PER_MINUTE as number | undefined) ?? 10,
      burst: (parsed.TEAMLLM_RATE_BURST as number | undefined) ?? 5,
    },
    memory: {
      maxTurns: (parsed.TEAMLLM_MEMORY_TURNS as number | undefined) ?? 8,
      maxChars: (parsed.TEAMLLM_MEMORY_CHARS as number | undefined) ?? 4000,
    },
    answerDecoding: (parsed.TEAMLLM_ANSWER_DECODING as Config['answerDecoding'] | undefined) ?? 'candidates',
    chatModelThread: (parsed.TEAMLLM_CHAT_MODEL_THREAD as Config['chatModelThread'] | undefined) ?? 'worker',
    servingEngine: (parsed.TEAMLLM_SERVING_ENGINE as Config['servingEngine'] | undefined) ?? 'teamllm',
    // A company's own documents replace the sample handbook.
    sampleKnowledgeBase: (parsed.TEAMLLM_SAMPLE_KB as boolean | undefined) ?? !parsed.TEAMLLM_QUICKSTART_DOCS,
    channelKnowledgeBases: (parsed.TEAMLLM_CHANNEL_KB as Record<string, string> | undefined) ?? {},
    ...(parsed.TEAMLLM_BACKEND ? { backend: parsed.TEAMLLM_BACKEND as string } : {}),
    ...(parsed.CHROMA_URL ? { chromaUrl: parsed.CHROMA_URL as string } : {}),
    ...(parsed.TEAMLLM_DATABASE_URL
      ? { database: { url: parsed.TEAMLLM_DATABASE_URL as string, poolSize: (parsed.TEAMLLM_DATABASE_POOL_SIZE as number | undefined) ?? 10 } }
      : {}),
    ...(parsed.TEAMLLM_MODELS_DIR ? { modelsDir: resolve(cwd, parsed.TEAMLLM_MODELS_DIR as string) } : {}),
    ...(parsed.TEAMLLM_JOB_LEASE_SECONDS !== undefined ? { jobLeaseMs: (parsed.TEAMLLM_JOB_LEASE_SECONDS as number) * 1000 } : {}),
    quickstart: (parsed.TEAMLLM_QUICKSTART as 'auto' | 'off' | undefined) ?? 'auto',
    ...(parsed.TEAMLLM_QUICKSTART_DOCS ? { quickstartDocs: resolve(cwd, parsed.TEAMLLM_QUICKSTART_DOCS as string) } : {}),
    ...(parsed.TEAMLLM_QUICKSTART_QUESTIONS ? { quickstartQuestions: resolve(cwd, parsed.TEAMLLM_QUICKSTART_QUESTIONS as string) } : {}),
    values,
    ...(file ? { file } : {}),
  };
}

/** The configuration as safe to print: secrets replaced. */
export function describeConfig(config: Config): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [key, value] of Object.entries(config.values) as [ConfigKey, string][]) {
    out[key] = (CONFIG_KEYS[key] as KeySpec).secret ? '[redacted]' : value;
  }
  return out;
}

export const SECRET_KEYS: ConfigKey[] = (Object.entries(CONFIG_KEYS) as [ConfigKey, KeySpec][]).filter(([, s]) => s.secret).map(([k]) => k);
