import { CardActionHandler, Client, EventDispatcher, LoggerLevel, WSClient } from '@larksuiteoapi/node-sdk';
import type { AdapterContext, PlatformAdapter } from '../platform-adapter.ts';
import { AnotherAnswer } from './another-answer.ts';
import { AnswerCards } from './answer-cards.ts';
import { Feedback } from './feedback.ts';
import { FeishuApi, TokenCache, type RetryPolicy } from './feishu-api.ts';
import { IncomingMessages } from './incoming-messages.ts';
import { FeishuRequestVerifier } from './request-verifier.ts';
import { sdkLogger } from './sdk-logger.ts';
import { readFeishuSettings } from './settings.ts';
import { feishuRoutes } from './webhook-routes.ts';

export { FEISHU_EVENTS_PATH } from './webhook-routes.ts';
export { FeishuConfigError, readFeishuSettings, type FeishuSettings } from './settings.ts';
export { answerCard, MAX_CARD_BYTES } from './answer-card.ts';

export interface FeishuAdapterOptions {
  /**
   * Pause between card updates while an answer streams. Feishu allows a handful of updates per
   * second per message; 500 ms stays well inside that with several answers streaming at once.
   */
  streamIntervalMs?: number;
  retry?: RetryPolicy;
  /** How long start() waits for the long connection before going on (it keeps retrying). */
  connectTimeoutMs?: number;
  /** The clock callbacks' timestamps are checked against (tests move it). */
  now?: () => number;
}

/**
 * The Feishu/Lark adapter. Reads FEISHU_APP_ID, FEISHU_APP_SECRET, FEISHU_VERIFICATION_TOKEN,
 * FEISHU_ENCRYPT_KEY, FEISHU_DOMAIN and FEISHU_MODE from ctx.env.
 *
 * webhook mode: `routes` serves POST /feishu/events (events and card callbacks).
 * ws mode: start() opens the SDK's long connection; no public URL needed, no routes.
 */
export async function createFeishuAdapter(ctx: AdapterContext, options: FeishuAdapterOptions = {}): Promise<PlatformAdapter> {
  const settings = readFeishuSettings(ctx.env);
  const logger = ctx.logger.child({ adapter: 'feishu' });
  const sdkLog = sdkLogger(logger);
  const tokens = new TokenCache();
  const client = new Client({
    appId: settings.appId,
    appSecret: settings.appSecret,
    domain: settings.domain,
    cache: tokens,
    logger: sdkLog,
    loggerLevel: LoggerLevel.debug,
  });
  const api = new FeishuApi(client, tokens, logger, options.retry);
  const answers = new AnswerCards();
  const streamIntervalMs = options.streamIntervalMs ?? 500;
  const messages = new IncomingMessages({ bot: ctx.bot, api, answers, logger, streamIntervalMs });
  const anotherAnswer = new AnotherAnswer({ bot: ctx.bot, api, answers, logger, streamIntervalMs });
  const feedback = new Feedback({ bot: ctx.bot, api, answers, logger, anotherAnswer });

  const events = new EventDispatcher({
    ...(settings.encryptKey ? { encryptKey: settings.encryptKey } : {}),
    ...(settings.verificationToken ? { verificationToken: settings.verificationToken } : {}),
    logger: sdkLog,
    loggerLevel: LoggerLevel.debug,
  }).register({
    'im.message.receive_v1': (data) => {
      messages.receive(data);
      return {};
    },
    'im.message.reaction.created_v1': (data) => {
      feedback.reaction(data, 'added');
      return {};
    },
    'im.message.reaction.deleted_v1': (data) => {
      feedback.reaction(data, 'removed');
      return {};
    },
    'card.action.trigger': (data: unknown) => feedback.cardAction(data),
  });

  // Prefetched so the first group @-mention does not wait for it; a failure is retried on demand.
  const prefetchBotIdentity = () =>
    api.ownOpenId().then(
      (openId) => logger.info({ botOpenId: openId }, 'Feishu bot identity known'),
      (err: unknown) => logger.warn({ err }, 'could not fetch the Feishu bot identity yet; will retry on the first mention'),
    );

  if (settings.mode === 'ws') {
    let ws: WSClient | undefined;
    return {
      name: 'feishu',
      async start() {
        void prefetchBotIdentity();
        await new Promise<void>((resolve, reject) => {
          const timer = setTimeout(() => {
            logger.warn({}, 'the Feishu long connection is not up yet; it keeps retrying in the background');
            resolve();
          }, options.connectTimeoutMs ?? 20_000);
          ws = new WSClient({
            appId: settings.appId,
            appSecret: settings.appSecret,
            domain: settings.domain,
            logger: sdkLog,
            loggerLevel: LoggerLevel.debug,
            onReady: () => {
              clearTimeout(timer);
              logger.info({}, 'Feishu long connection established');
              resolve();
            },
            onError: (err: Error) => {
              clearTimeout(timer);
              reject(new Error(`the Feishu long connection failed: ${err.message}`));
            },
          });
          void ws.start({ eventDispatcher: events });
        });
      },
      async stop() {
        ws?.close({ force: true });
        ws = undefined;
      },
    };
  }

  const legacyCards = new CardActionHandler({ logger: sdkLog, loggerLevel: LoggerLevel.debug }, (data: unknown) =>
    feedback.legacyCardAction(data),
  );
  const verifier = new FeishuRequestVerifier({
    ...(settings.encryptKey ? { encryptKey: settings.encryptKey } : {}),
    ...(settings.verificationToken ? { verificationToken: settings.verificationToken } : {}),
    windowSeconds: Number(ctx.env.FEISHU_REQUEST_WINDOW_SECONDS ?? 300),
    ...(options.now ? { now: options.now } : {}),
  });
  return {
    name: 'feishu',
    routes: feishuRoutes({ verifier, events, legacyCards, logger }),
    async start() {
      void prefetchBotIdentity();
    },
  };
}
