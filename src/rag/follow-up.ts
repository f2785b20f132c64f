/**
 * A follow-up question read with the one it follows. In a thread people ask "试用期多长？" and
 * then "那管理岗呢？", or "How many days of annual leave do I get?" and then "What about after 10
 * years?": alone, the second question names neither the rule nor what is asked, so retrieval and
 * the answer's rules find nothing. LangChain's history-aware retriever has an LLM rewrite such a
 * question into a standalone one; with no model that can, the follow-up is read together with the
 * question before it — the earlier question once, the follow-up twice, so that what the follow-up
 * names ("sick leave" after a question about annual leave) outweighs what it replaces.
 *
 * Only explicit follow-ups are joined: "what about …", "and for …", a short question opening with
 * 那 or ending in 呢. A question that stands alone, however short, is left alone: joining a new
 * topic to an old one would make both worse.
 */
import type { ConversationTurn } from '../core/index.ts';

const FOLLOW_UP_EN = /^(?:(?:and|but) )?(?:what|how) about\b|^what if\b|^(?:and|but|also|same) (?:for|with|if|in|at|after|before|when)\b|^and (?:what|how|if)\b/i;
/** "那管理岗呢？", "如果是实习生呢", "那北京呢": a short question that leans on the one before. */
const FOLLOW_UP_ZH = /^(?:那|那么|那如果|如果是|要是|换成)|呢[？?]?$/u;
const SHORT_ZH = 12;

export function isFollowUp(question: string): boolean {
  const q = question.normalize('NFKC').trim();
  if (FOLLOW_UP_EN.test(q)) return true;
  const han = [...q].filter((c) => /\p{Script=Han}/u.test(c)).length;
  return han > 0 && han <= SHORT_ZH && FOLLOW_UP_ZH.test(q);
}

/** The last question of the thread that stood alone, when `question` follows it; else undefined. */
export function questionFollowed(question: string, history: readonly ConversationTurn[]): string | undefined {
  if (!isFollowUp(question)) return undefined;
  return history.filter((t) => t.role === 'user').map((t) => t.text.trim()).findLast((q) => !isFollowUp(q));
}

/**
 * The question as retrieval and the answer's rules should read it: a follow-up joined with the
 * last question of the thread that stood alone (not with the follow-ups between: "实习生呢？" after
 * "那管理岗呢？" asks about 实习生 only); any other question as it is.
 */
export function standaloneQuestion(question: string, history: readonly ConversationTurn[]): string {
  const base = questionFollowed(question, history);
  return base === undefined ? question : [base, question.trim(), question.trim()].join(' ');
}

/** The question as a chat model should read it: a follow-up says which question it follows. */
export function questionInContext(question: string, history: readonly ConversationTurn[]): string {
  const base = questionFollowed(question, history);
  return base === undefined ? question : `${question.trim()} (a follow-up to the earlier question: ${base})`;
}
