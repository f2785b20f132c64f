import { App, SocketModeReceiver, webApi } from '@slack/bolt';
import type { AdapterContext, PlatformAdapter } from '../platform-adapter.ts';
import { describeSlackError } from './api-errors.ts';
import { boltLogger } from './bolt-logger.ts';
import { HonoReceiver } from './http-receiver.ts';
import { registerListeners } from './listeners.ts';

export { SLASH_COMMANDS } from './listeners.ts';
export { VOTE_BLOCK_ID, VOTE_DOWN_ACTION, VOTE_UP_ACTION } from './message-blocks.ts';

export interface SlackAdapterOptions {
  /**
   * Pause between streamed chat.update calls. chat.update is a Tier 3 method (about 50 a minute
   * per workspace), so one update a second per answer leaves room for several answers at once.
   */
  streamIntervalMs?: number;
  /** Retries of failed Web API calls (network errors, 429s after their Retry-After). */
  retryConfig?: webApi.RetryOptions;
  /** Socket Mode: how long to wait for a pong, and the base of the reconnect back-off. */
  socketPingTimeoutMs?: number;
  /** HTTP mode: answer Slack after this long even when no listener acknowledged. */
  ackTimeoutMs?: number;
}

const DEFAULT_RETRY: webApi.RetryOptions = { retries: 4, factor: 2, minTimeout: 1000, maxTimeout: 30_000, randomize: true };

/**
 * The Slack adapter, built on Bolt. HTTP mode (the default) serves `POST /slack/events` on the
 * shared server for events, interactivity and slash commands; with SLACK_APP_TOKEN set it uses
 * Socket Mode instead and needs no public URL.
 *
 * Reads SLACK_BOT_TOKEN, SLACK_SIGNING_SECRET (HTTP mode), SLACK_APP_TOKEN and SLACK_API_URL.
 * Calls auth.test once to learn the bot's own user id (for mentions and to ignore itself).
 */
export async function createSlackAdapter(ctx: AdapterContext, options: SlackAdapterOptions = {}): Promise<PlatformAdapter> {
  const { env } = ctx;
  const logger = ctx.logger.child({ adapter: 'slack' });
  const token = env.SLACK_BOT_TOKEN;
  const appToken = env.SLACK_APP_TOKEN;
  const signingSecret = env.SLACK_SIGNING_SECRET;
  if (!token) throw new Error('the Slack adapter needs SLACK_BOT_TOKEN');
  if (!appToken && !signingSecret) throw new Error('the Slack adapter needs SLACK_SIGNING_SECRET (or SLACK_APP_TOKEN for Socket Mode)');

  const slackLogger = boltLogger(logger);
  const clientOptions: webApi.WebClientOptions = {
    ...(env.SLACK_API_URL ? { slackApiUrl: env.SLACK_API_URL } : {}),
    retryConfig: options.retryConfig ?? DEFAULT_RETRY,
    timeout: 30_000,
    logger: slackLogger,
  };

  const client = new webApi.WebClient(token, clientOptions);
  let identity: webApi.AuthTestResponse;
  try {
    identity = await client.auth.test();
  } catch (err) {
    const failure = describeSlackError(err);
    throw new Error(`Slack refused the bot token or could not be reached (auth.test: ${failure.slackError ?? failure.message})`);
  }
  if (!identity.user_id) throw new Error('auth.test did not return the bot user id: is SLACK_BOT_TOKEN a bot token (xoxb-)?');
  const botUserId = identity.user_id;
  logger.info({ botUserId, botId: identity.bot_id, team: identity.team_id, mode: appToken ? 'socket' : 'http' }, 'Slack bot identified');

  const httpReceiver = appToken
    ? undefined
    : new HonoReceiver({ signingSecret: signingSecret!, logger, ...(options.ackTimeoutMs ? { ackTimeoutMs: options.ackTimeoutMs } : {}) });
  const receiver =
    httpReceiver ??
    new SocketModeReceiver({
      appToken: appToken!,
      logger: slackLogger,
      ...(options.socketPingTimeoutMs ? { clientPingTimeout: options.socketPingTimeoutMs } : {}),
      // apps.connections.open goes to the same API base as everything else.
      installerOptions: { clientOptions: { ...(env.SLACK_API_URL ? { slackApiUrl: env.SLACK_API_URL } : {}) } },
    });

  const app = new App({
    token,
    // Known from auth.test above, so Bolt does not call it again.
    botId: identity.bot_id ?? '',
    botUserId,
    receiver,
    ...(appToken ? { socketMode: true } : {}),
    logger: slackLogger,
    clientOptions,
    convoStore: false,
  });
  client.on(webApi.WebClientEvent.RATE_LIMITED, (retryAfterSec: number, request: { url?: string }) =>
    logger.warn({ retryAfterSec, method: request.url?.split('/').pop() }, 'Slack rate limit hit; waiting as asked before retrying'),
  );

  registerListeners(app, {
    bot: ctx.bot,
    logger,
    client,
    botUserId,
    botToken: token,
    streamIntervalMs: options.streamIntervalMs ?? 1000,
  });

  if (httpReceiver) return { name: 'slack', routes: httpReceiver.routes };
  return {
    name: 'slack',
    async start() {
      await app.start();
      logger.info({}, 'connected to Slack in Socket Mode');
    },
    async stop() {
      await app.stop();
    },
  };
}
