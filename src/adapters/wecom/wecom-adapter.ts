import { Hono, type Context } from 'hono';
import type { IncomingMessage, ReplyContent } from '../../core/index.ts';
import type { AdapterContext, PlatformAdapter } from '../platform-adapter.ts';
import { limitBody } from '../http/body-limit.ts';
import { TrustedProxies } from '../http/client-address.ts';
import { WecomApiClient } from './api-client.ts';
import { CallbackRejected, openCallback, type CallbackSecrets } from './callback-crypto.ts';
import { MalformedXml, parseEnvelope, parseInbound, type WecomInbound } from './callback-xml.ts';
import type { SendClock, SendLimit } from './member-send-queue.ts';
import { actionValue, parseButtonKey, type WecomFormat } from './message-format.ts';
import { WecomMessenger } from './messenger.ts';
import { WecomReplyTarget } from './reply-target.ts';
import { isAnotherAnswerReply, LastAnswers, parseVoteReply, RecentIds } from './vote-replies.ts';
import { readWecomConfig } from './wecom-config.ts';

export interface WecomAdapterOptions {
  /** How answers are sent: `markdown` (default, the WeCom app renders it) or `text` (also the WeChat plug-in). */
  format?: WecomFormat;
  /** Per-member send limits; default WeCom's 30/min and 1000/hour. */
  memberLimits?: SendLimit[];
  /** How long after an answer a "👍"/"👎" reply still counts as a vote on it. */
  voteReplyWindowMs?: number;
  /** First pause before retrying a busy WeCom API. */
  retryDelayMs?: number;
  /** How long stop() waits for answers in flight and queued messages. */
  stopGraceMs?: number;
  /** The clock callbacks' timestamps are checked against (tests move it). */
  now?: () => number;
  /** The clock of the per-member send limits (tests pace it by hand). */
  sendClock?: SendClock;
}

const REFUSAL_STATUS = { bad_signature: 401, undecryptable: 400, wrong_receive_id: 403, stale_timestamp: 401 } as const;
const UNSUPPORTED = 'I can only read text messages for now — please type your question.';

/**
 * The WeCom (企业微信) self-built app: `GET /wecom/callback` answers URL verification, `POST`
 * takes encrypted messages and card clicks. Every callback is verified, decrypted and checked
 * against the corp id, acknowledged with an empty 200 at once (WeCom retries after 5 s) and
 * handled afterwards.
 */
export async function createWecomAdapter(ctx: AdapterContext, options: WecomAdapterOptions = {}): Promise<PlatformAdapter> {
  const config = readWecomConfig(ctx.env);
  const { bot } = ctx;
  const log = ctx.logger.child({ adapter: 'wecom' });
  const secrets: CallbackSecrets = {
    token: config.token,
    encodingAesKey: config.encodingAesKey,
    receiveId: config.corpId,
    windowSeconds: Number(ctx.env.WECOM_REQUEST_WINDOW_SECONDS ?? 300),
    ...(options.now ? { now: options.now } : {}),
  };
  const client = new WecomApiClient({
    corpId: config.corpId,
    secret: config.secret,
    baseUrl: config.apiBase,
    logger: log,
    ...(options.retryDelayMs !== undefined ? { retryDelayMs: options.retryDelayMs } : {}),
  });
  const messenger = new WecomMessenger({
    client,
    agentId: Number(config.agentId),
    format: options.format ?? (ctx.env.WECOM_MESSAGE_FORMAT === 'text' ? 'text' : 'markdown'),
    logger: log,
    ...(options.memberLimits ? { memberLimits: options.memberLimits } : {}),
    ...(options.sendClock ? { sendClock: options.sendClock } : {}),
  });
  const lastAnswers = new LastAnswers(options.voteReplyWindowMs);
  const handledIds = new RecentIds();
  const inFlight = new Set<Promise<void>>();
  let closing = false;

  const deliver = async (user: string, content: ReplyContent): Promise<void> => {
    if (content.phase === 'final' && content.answerId) {
      lastAnswers.remember(user, content.answerId);
      await messenger.sendAnswer(user, { ...content, answerId: content.answerId });
    } else {
      await messenger.sendText(user, content.text);
    }
  };

  /**
   * A question; with `again.regenerate` "another answer" for that answer id (card button or reply);
   * with `again.fromSection` that answer's question answered from the section tapped.
   */
  const ask = async (m: WecomInbound, eventId: string, again: { regenerate?: string; fromSection?: IncomingMessage['fromSection'] } = {}): Promise<void> => {
    const { regenerate, fromSection } = again;
    const msg: IncomingMessage = {
      platform: 'wecom',
      eventId,
      workspace: config.corpId,
      channel: m.FromUserName,
      messageId: m.MsgId ?? eventId,
      // The sender's UserID comes from a signed, encrypted callback: safe to check admin rights on.
      user: { id: m.FromUserName },
      text: regenerate || fromSection ? '' : (m.Content ?? ''),
      ...(regenerate ? { regenerate } : {}),
      ...(fromSection ? { fromSection } : {}),
      // A self-built app only ever talks one-to-one.
      isDirect: true,
      mentionsBot: true,
      attachments: [],
      receivedAt: Number(m.CreateTime) * 1000,
    };
    const target = new WecomReplyTarget(
      `wecom:${eventId}`,
      (content) => deliver(m.FromUserName, content),
      (image) => messenger.sendImage(m.FromUserName, image),
    );
    const result = await bot.handle(msg, target);
    log.debug({ eventId, outcome: result.outcome }, 'message handled');
  };

  const voteByReply = async (m: WecomInbound, answerId: string, value: 1 | -1): Promise<void> => {
    const result = await bot.vote({ answerId, platform: 'wecom', userId: m.FromUserName, value });
    if (!result.ok) {
      log.warn({ answerId }, 'vote reply for an unknown answer ignored');
      return;
    }
    await messenger.sendText(m.FromUserName, `Thanks — your ${value === 1 ? '👍' : '👎'} on my last answer is recorded.`);
  };

  const cardClicked = async (m: WecomInbound): Promise<void> => {
    // Events carry no MsgId; sender + create time identify one (the key tells two quick clicks apart).
    if (!handledIds.claim(`event:${m.FromUserName}:${m.CreateTime}:${m.EventKey ?? ''}`)) return;
    const button = parseButtonKey(m.EventKey);
    if (!button) {
      log.warn({ taskId: m.TaskId }, 'card click with an unknown button key ignored');
      return;
    }
    if (button.action === 'another') {
      // The Bot answers only for an answer given to this member (a self-built app's chats are
      // one-to-one), and otherwise says so; its claim on this id holds across restarts.
      return ask(m, `another:${m.FromUserName}:${m.CreateTime}:${button.answerId}`, { regenerate: button.answerId });
    }
    if (button.action === 'section') {
      // The same rule as "another answer": only for an answer given to this member.
      return ask(m, `section:${m.FromUserName}:${m.CreateTime}:${button.answerId}`, { fromSection: { answer: button.answerId, ...button.section } });
    }
    const value = actionValue(button.action);
    const result = await bot.vote({ answerId: button.answerId, platform: 'wecom', userId: m.FromUserName, value });
    if (!result.ok) {
      log.warn({ answerId: button.answerId }, 'vote for an unknown answer ignored');
      return;
    }
    if (!m.ResponseCode) return;
    await messenger.showVote(m.FromUserName, m.ResponseCode, button.answerId, value === 0 ? undefined : value);
  };

  const dispatch = async (m: WecomInbound): Promise<void> => {
    if (m.AgentID && m.AgentID !== config.agentId) {
      log.warn({ agentId: m.AgentID }, 'callback for another WeCom app ignored');
      return;
    }
    const user = m.FromUserName;
    const eventId = m.MsgId ?? `${user}:${m.CreateTime}`;
    if (m.MsgType === 'event') {
      if (m.Event === 'template_card_event') return cardClicked(m);
      log.debug({ event: m.Event }, 'WeCom event ignored');
      return;
    }
    // A retry this process has seen must not move the conversation on (it would void a pending
    // vote reply); the Bot's persistent claim still catches retries that arrive after a restart.
    if (!handledIds.claim(eventId)) {
      log.info({ eventId }, 'duplicate WeCom delivery dropped');
      return;
    }
    if (m.MsgType === 'text') {
      const vote = parseVoteReply(m.Content);
      const answerId = vote === undefined ? undefined : lastAnswers.current(user);
      if (vote !== undefined && answerId) return voteByReply(m, answerId, vote);
      const again = isAnotherAnswerReply(m.Content) ? lastAnswers.current(user) : undefined;
      if (again) return ask(m, eventId, { regenerate: again });
      lastAnswers.forget(user);
      return ask(m, eventId);
    }
    lastAnswers.forget(user);
    await messenger.sendText(user, UNSUPPORTED);
  };

  const track = (work: Promise<void>, m: WecomInbound): void => {
    const guarded = work.catch((err: unknown) => log.error({ err, msgType: m.MsgType, event: m.Event }, 'handling a WeCom callback failed'));
    inFlight.add(guarded);
    void guarded.finally(() => inFlight.delete(guarded));
  };

  const refuse = (c: Context, err: unknown) => {
    if (err instanceof CallbackRejected) {
      log.warn({ reason: err.reason, ip: (ctx.proxies ?? new TrustedProxies()).clientAddress(c) }, 'WeCom callback refused');
      return c.text(err.reason.replace(/_/g, ' '), REFUSAL_STATUS[err.reason]);
    }
    if (err instanceof MalformedXml) {
      log.warn({ problem: err.message }, 'malformed WeCom callback refused');
      return c.text('malformed XML', 400);
    }
    throw err;
  };

  const routes = new Hono();
  routes.use('/wecom/*', limitBody(256 * 1024, 'text'));

  routes.get('/wecom/callback', (c) => {
    const query = signedQuery(c, true);
    if (!query) return c.text('msg_signature, timestamp, nonce and echostr are required', 400);
    // Base64 has no spaces: one here is a '+' that reached us unencoded and was read as a space.
    const echostr = query.echostr.replace(/ /g, '+');
    try {
      return c.text(openCallback(secrets, query, echostr));
    } catch (err) {
      return refuse(c, err);
    }
  });

  routes.post('/wecom/callback', async (c) => {
    if (closing) return c.text('shutting down', 503);
    const query = signedQuery(c, false);
    if (!query) return c.text('msg_signature, timestamp and nonce are required', 400);
    let inbound: WecomInbound;
    try {
      const envelope = parseEnvelope(await c.req.text());
      inbound = parseInbound(openCallback(secrets, query, envelope.Encrypt));
    } catch (err) {
      return refuse(c, err);
    }
    track(dispatch(inbound), inbound);
    // An empty body tells WeCom the message arrived; the answer follows through message/send.
    return c.body('', 200);
  });

  return {
    name: 'wecom',
    routes,
    async stop() {
      closing = true;
      const grace = options.stopGraceMs ?? 10_000;
      let timer: NodeJS.Timeout | undefined;
      const deadline = new Promise<void>((r) => (timer = setTimeout(r, grace)));
      await Promise.race([Promise.allSettled([...inFlight]).then(() => messenger.drained()), deadline]);
      clearTimeout(timer);
    },
  };
}

function signedQuery(c: Context, withEcho: true): { signature: string; timestamp: string; nonce: string; echostr: string } | undefined;
function signedQuery(c: Context, withEcho: false): { signature: string; timestamp: string; nonce: string } | undefined;
function signedQuery(c: Context, withEcho: boolean) {
  const signature = c.req.query('msg_signature');
  const timestamp = c.req.query('timestamp');
  const nonce = c.req.query('nonce');
  const echostr = c.req.query('echostr');
  if (!signature || !timestamp || !nonce || (withEcho && !echostr)) return undefined;
  return { signature, timestamp, nonce, ...(withEcho ? { echostr } : {}) };
}
