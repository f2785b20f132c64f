import type { ReplyContent } from '../../core/index.ts';
import { BoundedMap } from './recent.ts';

export interface PostedAnswer {
  messageId: string;
  content: ReplyContent;
  /** Shared cards in groups must not show one person's vote as if it were everyone's. */
  isDirect: boolean;
  /** Posted inside a thread (reply_in_thread): "another answer" goes there too. */
  inThread?: boolean;
}

/**
 * The final cards of recent answers, by answer id. A vote's callback must answer with the whole
 * refreshed card, and Feishu's callback does not include the card's current content; the core
 * does not hand the answer back either, so we keep what we posted. After a restart an old card
 * gets a toast only, and keeps its look.
 */
export class AnswerCards {
  private readonly byAnswer = new BoundedMap<string, PostedAnswer>(2000);

  remember(posted: PostedAnswer): void {
    if (posted.content.phase === 'final' && posted.content.answerId) this.byAnswer.set(posted.content.answerId, posted);
  }

  get(answerId: string): PostedAnswer | undefined {
    return this.byAnswer.get(answerId);
  }
}
