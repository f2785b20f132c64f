import type { Actor, KnowledgeBase, ModelService, TrainingService } from './services.ts';
import type { IncomingMessage, ModelInfo, ReplyTarget } from './types.ts';

export interface ParsedCommand {
  name: string;
  sub?: string;
  /** Positional words after the subcommand. */
  args: string[];
  /** Options: `key=value`, `--key value` and `--key=value` words alike (`--max-iters` → `maxIters`). */
  params: Record<string, string>;
  /** Everything after the subcommand, untouched (for search queries). */
  rest: string;
}

const COMMAND_RE = /^\/([a-z][a-z0-9_-]*)(?:\s+([\s\S]*))?$/i;

/** `--max-iters` → `maxIters`: the CLI's spelling of an option, as the stages name their parameters. */
const camel = (flag: string) => flag.replace(/-+([a-z0-9])/gi, (_, c: string) => c.toUpperCase());

/**
 * `/train rlhf algo=kto notes` and `/train rlhf --algo kto notes` ->
 * {name:'train', sub:'rlhf', params:{algo:'kto'}, args:['notes']}. Admins type what the CLI's help
 * shows, so both spellings mean the same; a `--flag` with no value is `true`.
 */
export function parseCommand(text: string): ParsedCommand | undefined {
  const match = COMMAND_RE.exec(text.trim());
  if (!match) return undefined;
  const name = match[1]!.toLowerCase();
  const body = (match[2] ?? '').trim();
  const words = body ? body.split(/\s+/) : [];
  const sub = words[0] === undefined || words[0].includes('=') || words[0].startsWith('--') ? undefined : words.shift()!.toLowerCase();
  const rest = sub === undefined ? body : body.slice(body.toLowerCase().indexOf(sub) + sub.length).trim();
  const args: string[] = [];
  const params: Record<string, string> = {};
  for (let i = 0; i < words.length; i++) {
    const word = words[i]!;
    if (word.startsWith('--') && word.length > 2) {
      const eq = word.indexOf('=');
      if (eq > 0) params[camel(word.slice(2, eq))] = word.slice(eq + 1);
      else {
        const next = words[i + 1];
        const hasValue = next !== undefined && !next.startsWith('--') && !next.includes('=');
        params[camel(word.slice(2))] = hasValue ? next : 'true';
        if (hasValue) i++;
      }
      continue;
    }
    const eq = word.indexOf('=');
    if (eq > 0) params[word.slice(0, eq)] = word.slice(eq + 1);
    else args.push(word);
  }
  return { name, ...(sub === undefined ? {} : { sub }), args, params, rest };
}

/** A refusal naming what a subcommand does not take (an option ignored would run something else than asked). */
function unexpected(usage: string, command: ParsedCommand, allowArgs = 0): string | undefined {
  const options = Object.keys(command.params);
  const extra = command.args.slice(allowArgs);
  if (options.length === 0 && extra.length === 0) return undefined;
  const what = [...options.map((o) => `option "${o}"`), ...extra.map((a) => `"${a}"`)].join(', ');
  return `${usage} does not take ${what}; nothing was changed. Usage: ${usage}`;
}

export interface CommandServices {
  kb?: KnowledgeBase;
  training?: TrainingService;
  models?: ModelService;
  serving: () => ModelInfo;
  resetConversation: () => Promise<void>;
}

export interface CommandContext {
  command: ParsedCommand;
  msg: IncomingMessage;
  actor: Actor;
  services: CommandServices;
  /** Where the command was typed, for commands that keep a message updated (training progress). */
  target: ReplyTarget;
}

export interface CommandSpec {
  name: string;
  /** One line per subcommand for /help; `admin` lines are shown to admins only. */
  usage: { text: string; admin: boolean }[];
  requiresAdmin(sub: string | undefined): boolean;
  run(ctx: CommandContext): Promise<string>;
}

const NOT_YET = (what: string) =>
  `${what} is not available in this version of teamllm yet; nothing was changed.`;

// The stages a chat job can run (the tokenizer is trained from the CLI); `embeddings` is the
// retrieval encoder, relearnt with the questions people liked the answers to.
const TRAIN_KINDS = ['pretrain', 'sft', 'reward', 'rlhf', 'selector', 'embeddings'];

const train: CommandSpec = {
  name: 'train',
  usage: [
    { text: '/train status — the training queue and the running job', admin: true },
    { text: `/train ${TRAIN_KINDS.join('|')} [key=value or --key value ...] — start a training job`, admin: true },
    { text: '/train stop — stop the running job, keeping its last checkpoint', admin: true },
    { text: '/train resume — continue an interrupted job from its checkpoint', admin: true },
  ],
  requiresAdmin: () => true,
  async run({ command, services, actor, target }) {
    const training = services.training;
    if (!training) return NOT_YET('Training from the chat');
    const sub = command.sub ?? 'status';
    if (sub === 'status' || sub === 'stop' || sub === 'resume') {
      const refused = unexpected(`/train ${sub}`, command);
      if (refused) return refused;
      if (sub === 'status') return training.status();
      if (sub === 'stop') return training.stop(actor);
      return training.resume(actor, target);
    }
    // Every option is a stage parameter (the stage refuses unknown ones by name); a bare word is none.
    if (command.args.length > 0)
      return `/train ${sub} takes options as key=value or --key value; "${command.args.join(' ')}" is neither. Nothing was started.`;
    // The training service knows which stages it can run and answers for unknown ones.
    return training.start(sub, command.params, actor, target);
  },
};

const kb: CommandSpec = {
  name: 'kb',
  usage: [
    { text: '/kb list — documents in the knowledge base', admin: false },
    { text: '/kb search <question> — the passages the bot would use', admin: false },
    { text: '/kb add (with files attached, or links) — add documents', admin: true },
    { text: '/kb remove <source> — remove a document', admin: true },
  ],
  requiresAdmin: (sub) => sub === 'add' || sub === 'remove',
  async run({ command, services, msg }) {
    const base = services.kb;
    if (!base) return NOT_YET('The knowledge base');
    const sub = command.sub ?? 'list';
    // search, add and remove take free text (a question, links that may hold `=`, a source name).
    const refused = sub === 'list' ? unexpected('/kb list', command) : undefined;
    if (refused) return refused;
    switch (sub) {
      case 'list': {
        const sources = await base.list();
        if (sources.length === 0) return 'The knowledge base is empty.';
        return [
          `${sources.length} documents:`,
          ...sources.map((s) => `• ${s.source} — ${s.chunks} passages, indexed ${new Date(s.indexedAt).toISOString().slice(0, 16).replace('T', ' ')}`),
        ].join('\n');
      }
      case 'search': {
        if (!command.rest) return 'Usage: /kb search <question>';
        const hits = await base.search(command.rest, 5);
        if (hits.length === 0) return 'Nothing in the knowledge base matches that.';
        return hits.map((h, i) => `[${i + 1}] ${h.title} (${h.source}, score ${h.score.toFixed(2)})\n${h.text.slice(0, 200)}`).join('\n\n');
      }
      case 'add': {
        // Platforms wrap links (<https://...|label> on Slack); only http(s) links are taken from chat,
        // never server paths: those are for `teamllm kb add` on the server.
        const words = command.rest.split(/\s+/).filter(Boolean).map((w) => w.replace(/^<|>$/g, '').split('|')[0]!);
        const links = words.filter((w) => /^https?:\/\/\S+$/i.test(w));
        if (words.length > links.length) return 'In chat, /kb add takes attached files or http(s) links; add server folders with `teamllm kb add` on the server.';
        if (msg.attachments.length === 0 && links.length === 0)
          return 'Attach the files to add (markdown, text, HTML, PDF, Word) to the message with /kb add, or give links.';
        const fromFiles = msg.attachments.length > 0 ? await base.addAttachments(msg.attachments) : undefined;
        const fromLinks = links.length > 0 ? await base.addPaths(links) : undefined;
        const report = {
          added: [...(fromFiles?.added ?? []), ...(fromLinks?.added ?? [])],
          updated: [...(fromFiles?.updated ?? []), ...(fromLinks?.updated ?? [])],
          unchanged: [...(fromFiles?.unchanged ?? []), ...(fromLinks?.unchanged ?? [])],
          failed: [...(fromFiles?.failed ?? []), ...(fromLinks?.failed ?? [])],
        };
        const lines = [
          `Added ${report.added.length}, updated ${report.updated.length}, unchanged ${report.unchanged.length}.`,
          ...report.failed.map((f) => `Skipped ${f.source}: ${f.reason}`),
        ];
        return lines.join('\n');
      }
      case 'remove': {
        const source = command.rest;
        if (!source) return 'Usage: /kb remove <source>';
        const removed = await base.remove(source);
        return removed > 0 ? `Removed ${source} (${removed} passages).` : `No document named ${source} in the knowledge base.`;
      }
      default:
        return `Unknown /kb command "${command.sub}". Try /kb list, /kb search, /kb add, /kb remove.`;
    }
  },
};

const model: CommandSpec = {
  name: 'model',
  usage: [
    { text: '/model — which model is answering', admin: false },
    { text: '/model list — model versions and their scores', admin: true },
    { text: '/model promote <version> — serve a version', admin: true },
    { text: '/model rollback — go back to the previous version', admin: true },
  ],
  requiresAdmin: (sub) => sub !== undefined,
  async run({ command, services, actor }) {
    const serving = services.serving();
    if (command.sub === undefined) {
      return serving.kind === 'retrieval-only'
        ? `No language model is trained yet: answers quote the knowledge base directly (${serving.name}).`
        : `Answering with ${serving.name} version ${serving.version}.`;
    }
    const models = services.models;
    if (!models) return NOT_YET('Model management');
    const usage = { list: '/model list', promote: '/model promote <version>', rollback: '/model rollback' }[command.sub];
    const refused = usage ? unexpected(usage, command, command.sub === 'promote' ? 1 : 0) : undefined;
    if (refused) return refused;
    switch (command.sub) {
      case 'list':
        return models.list();
      case 'promote':
        if (!command.args[0]) return 'Usage: /model promote <version>';
        return models.promote(command.args[0], actor);
      case 'rollback':
        return models.rollback(actor);
      default:
        return `Unknown /model command "${command.sub}". Try /model list, /model promote, /model rollback.`;
    }
  },
};

const reset: CommandSpec = {
  name: 'reset',
  usage: [{ text: '/reset — forget this conversation and start afresh', admin: false }],
  requiresAdmin: () => false,
  async run({ services }) {
    await services.resetConversation();
    return 'Done: I have forgotten this conversation.';
  },
};

export const BUILTIN_COMMANDS: CommandSpec[] = [train, kb, model, reset];

export function helpText(commands: CommandSpec[], isAdmin: boolean): string {
  const lines = commands.flatMap((c) => c.usage.filter((u) => isAdmin || !u.admin).map((u) => `• ${u.text}`));
  return [
    'Ask me anything about the company: I answer from its documents and cite them. Rate answers with 👍/👎 — that is how I get better.',
    '',
    '• /help — this message',
    ...lines,
    ...(isAdmin ? [] : ['', 'Training, promoting models and changing the knowledge base are for admins.']),
  ].join('\n');
}
