import type { App, BlockButtonAction, webApi } from '@slack/bolt';
import type { Bot, IncomingMessage, Logger, ReplyTarget } from '../../core/index.ts';
import { describeSlackError } from './api-errors.ts';
import { commandText, fromAppMention, fromMessageEvent, reactionVote, type SlackMessageEvent, type Skip } from './inbound.ts';
import { ANOTHER_ANSWER_ACTION, parseSectionChoice, SECTIONS_BLOCK_ID, VOTE_BLOCK_ID, VOTE_DOWN_ACTION, VOTE_UP_ACTION, withVoteTally } from './message-blocks.ts';
import { ResponseUrlTarget, SlackThreadTarget } from './reply-targets.ts';

export interface ListenerDeps {
  bot: Bot;
  logger: Logger;
  client: webApi.WebClient;
  botUserId: string;
  botToken: string;
  streamIntervalMs: number;
}

/** Slash commands that map to the bot's text commands of the same name. */
export const SLASH_COMMANDS = ['/train', '/kb', '/model'] as const;

interface EventEnvelope {
  event_id?: string;
  team_id?: string;
}

interface ReactionEvent {
  type: 'reaction_added' | 'reaction_removed';
  user: string;
  reaction: string;
  item_user?: string;
  item: { type: string; channel?: string; ts?: string };
}

/**
 * Wires Slack's events, button clicks and slash commands to the Bot. Listeners acknowledge
 * first (Bolt acks Events API deliveries itself before they run) and answer afterwards.
 */
export function registerListeners(app: App, deps: ListenerDeps): void {
  const { bot, logger } = deps;

  const handle = async (msg: IncomingMessage | Skip, target: (msg: IncomingMessage) => ReplyTarget) => {
    if ('skip' in msg) {
      logger.debug({ reason: msg.skip }, 'Slack message not for the bot');
      return;
    }
    try {
      const result = await bot.handle(msg, target(msg));
      logger.debug({ eventId: msg.eventId, outcome: result.outcome }, 'Slack message handled');
    } catch (err) {
      // Typically the first post failed (channel_not_found, not_in_channel, rate limits exhausted).
      logger.error({ slack: describeSlackError(err), eventId: msg.eventId, channel: msg.channel }, 'could not answer a Slack message');
    }
  };

  const threadTarget = (msg: IncomingMessage) =>
    new SlackThreadTarget({
      client: deps.client,
      channel: msg.channel,
      // In a DM outside threads the answer goes to the conversation itself.
      ...(msg.thread ? { threadTs: msg.thread } : {}),
      streamIntervalMs: deps.streamIntervalMs,
      logger,
    });

  const envelopeOf = (body: unknown) => {
    const envelope = body as EventEnvelope;
    return { eventId: envelope.event_id ?? '', team: envelope.team_id ?? '' };
  };

  app.event('app_mention', async ({ event, body }) => {
    const { eventId, team } = envelopeOf(body);
    const input = { eventId, team, event: event as unknown as SlackMessageEvent, botUserId: deps.botUserId, botToken: deps.botToken };
    await handle(fromAppMention(input), threadTarget);
  });

  app.message(async ({ message, body }) => {
    const { eventId, team } = envelopeOf(body);
    const input = { eventId, team, event: message as unknown as SlackMessageEvent, botUserId: deps.botUserId, botToken: deps.botToken };
    await handle(fromMessageEvent(input), threadTarget);
  });

  const onReaction = async (event: ReactionEvent) => {
    const vote = reactionVote(event.reaction);
    if (vote === undefined || event.item.type !== 'message' || !event.item.ts) return;
    // item_user is the message's author: skip other people's messages without a store lookup.
    if (event.item_user && event.item_user !== deps.botUserId) return;
    const value = event.type === 'reaction_added' ? vote : 0;
    // Removing a 👍 reaction withdraws only a 👍: a 👎 clicked since then stays.
    const result = await bot.voteOnReply('slack', event.item.ts, event.user, value, undefined, value === 0 ? vote : undefined);
    if (result) logger.info({ answerId: result.answerId, user: event.user, value }, 'vote by reaction');
  };
  app.event('reaction_added', async ({ event }) => onReaction(event as unknown as ReactionEvent));
  app.event('reaction_removed', async ({ event }) => onReaction(event as unknown as ReactionEvent));

  /**
   * A button that asks the answer's question again — "↻ Another answer", or a section under a
   * "don't know" — as a message in the answer's thread: where its question was asked and where the
   * next answer goes. One click, one answer: a redelivered click carries the same action_ts.
   */
  const askAgain = async (
    kind: 'another' | 'section',
    action: { action_ts: string },
    body: BlockButtonAction,
    again: Pick<IncomingMessage, 'regenerate' | 'fromSection'>,
  ): Promise<void> => {
    if (!body.channel || !body.message) return;
    const message = body.message as { ts: string; thread_ts?: string };
    const channel = body.channel.id;
    await handle(
      {
        platform: 'slack',
        eventId: `${kind}:${channel}:${message.ts}:${action.action_ts}:${body.user.id}`,
        workspace: body.team?.id ?? '',
        channel,
        thread: message.thread_ts ?? message.ts,
        messageId: `${kind}:${action.action_ts}`,
        user: { id: body.user.id, ...(body.user.name ? { name: body.user.name } : {}) },
        text: '',
        ...again,
        isDirect: channel.startsWith('D'),
        mentionsBot: true,
        attachments: [],
        receivedAt: Date.now(),
      },
      threadTarget,
    );
  };

  // "Is the answer in one of these sections?": the question answered again from the one clicked.
  app.action<BlockButtonAction>({ block_id: SECTIONS_BLOCK_ID }, async ({ ack, action, body }) => {
    await ack();
    const choice = parseSectionChoice(action.value);
    if (choice) await askAgain('section', action, body, { fromSection: choice });
  });

  app.action<BlockButtonAction>({ block_id: VOTE_BLOCK_ID }, async ({ ack, action, body, respond }) => {
    await ack();
    if (action.action_id === ANOTHER_ANSWER_ACTION) {
      if (action.value) await askAgain('another', action, body, { regenerate: action.value });
      return;
    }
    const value = action.action_id === VOTE_UP_ACTION ? 1 : action.action_id === VOTE_DOWN_ACTION ? -1 : undefined;
    if (value === undefined || !action.value) return;
    const result = await bot.vote({ answerId: action.value, platform: 'slack', userId: body.user.id, value });
    if (!result.ok) {
      await respond({ response_type: 'ephemeral', replace_original: false, text: 'Sorry, I no longer have that answer on record, so the vote was not counted.' });
      return;
    }
    logger.info({ answerId: action.value, user: body.user.id, value }, 'vote by button');
    const message = body.message;
    if (!message || !body.channel) return;
    try {
      await deps.client.chat.update({
        channel: body.channel.id,
        ts: message.ts,
        text: message.text ?? 'teamllm answer',
        blocks: withVoteTally(message.blocks ?? [], action.value, result, body.user.id, value),
      });
    } catch (err) {
      // The vote is recorded; only its display failed.
      logger.warn({ slack: describeSlackError(err), channel: body.channel.id }, 'could not show the vote on the Slack message');
    }
  });

  app.command(new RegExp(`^(${SLASH_COMMANDS.map((c) => c.replace('/', '\\/')).join('|')})$`), async ({ ack, command, respond }) => {
    await ack();
    const msg: IncomingMessage = {
      platform: 'slack',
      // Slack does not redeliver slash commands; the trigger id is unique per invocation.
      eventId: `command:${command.trigger_id}`,
      workspace: command.team_id,
      channel: command.channel_id,
      messageId: `command:${command.trigger_id}`,
      user: { id: command.user_id, ...(command.user_name ? { name: command.user_name } : {}) },
      text: commandText(command.command, command.text),
      isDirect: command.channel_name === 'directmessage',
      // A slash command is addressed to the app by definition.
      mentionsBot: true,
      attachments: [],
      receivedAt: Date.now(),
    };
    await handle(msg, () => new ResponseUrlTarget(respond, command.trigger_id));
  });

  app.error(async (err) => {
    logger.error({ slack: describeSlackError(err) }, 'Slack listener failed');
  });
}
