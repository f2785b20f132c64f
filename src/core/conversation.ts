import type { ConversationTurn, IncomingMessage } from './types.ts';

export interface MemoryBudget {
  maxTurns: number;
  /** Rough token budget in characters: models here see a few hundred tokens of history at most. */
  maxChars: number;
}

/**
 * One conversation per thread. A DM without threads is one running conversation; a group
 * message outside a thread starts a thread rooted at itself (that is where the bot replies).
 */
export function conversationKey(msg: IncomingMessage): string {
  const thread = msg.thread ?? (msg.isDirect ? 'direct' : msg.messageId);
  return [msg.platform, msg.workspace, msg.channel, thread].join(':');
}

/** Keeps the most recent turns that fit the budget, oldest first. */
export function fitToBudget(turns: ConversationTurn[], budget: MemoryBudget): ConversationTurn[] {
  const kept: ConversationTurn[] = [];
  let chars = 0;
  for (let i = turns.length - 1; i >= 0 && kept.length < budget.maxTurns; i--) {
    const turn = turns[i]!;
    chars += turn.text.length;
    if (chars > budget.maxChars) break;
    kept.push(turn);
  }
  return kept.reverse();
}
