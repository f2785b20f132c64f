/**
 * The kind of benefit, fee or leave a Chinese question names — 陪产假, 育儿假, 高温费, 失业金, 年终奖 —
 * and whether the passage an answer comes from names it too. A question about 陪产假 answered from
 * the 产假 rule ("98天") is the confident wrong answer a company bot must not give: the passage is
 * about another kind, however many words it shares. So the "don't know" gate refuses an answer
 * whose passage does not name the kind asked about.
 *
 * A name is matched in order with up to two characters between (年假 is the 年休假 a rule writes,
 * 春节假 the 春节假期); the generic 请假 / 休假 / 放假 (a verb + 假) name no kind. Measured on every
 * split of the sample handbook's Chinese questions and the Chinese dev set: it withheld five wrong
 * answers to unanswerable questions and no right one (docs/fine-tuning.md).
 */
import { CJK_RANGES } from '../model/text/cjk.ts';

const KIND_SUFFIX = '假|费|金|险|奖|补贴|津贴';
const NAMED = new RegExp(`([${CJK_RANGES}]{1,2})(${KIND_SUFFIX})`, 'gu');
/** Question words, counts, pronouns and verbs that stand before a name without being part of it. */
const NOT_NAME = /^[几天多少的有个给每了是我你他她这那些各能拿领交发扣按没来打算请休放从完]+/u;
/** Words with the suffix that name no kind: "免费" is free, "保险" any insurance. */
const GENERIC = new Set(['免费', '收费', '付费', '花费', '消费', '保险', '现金', '资金']);
/** A verb before 假 is asking for leave, not naming a kind of it. */
const LEAVE_VERB = /[请休放]$/u;

/** The kinds a question names ("老婆生孩子，男方能休几天陪产假？" → ["陪产假"]). */
export function namedKinds(question: string): string[] {
  const out: string[] = [];
  for (const m of question.normalize('NFKC').matchAll(NAMED)) {
    // A name holds no 的: "没休的假" is leave not taken, "夏天的高温费" names 高温费.
    const before = m[1]!.split('的').pop()!;
    if (m[2] === '假' && LEAVE_VERB.test(before)) continue;
    const name = before.replace(NOT_NAME, '') + m[2]!;
    if ([...name].length >= 2 && ![...GENERIC].some((g) => name.endsWith(g)) && !out.includes(name)) out.push(name);
  }
  return out;
}

function escape(c: string): string {
  return c.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

/** The kinds the question names that the text does not (each character in order, ≤ 2 between). */
export function kindsMissing(question: string, text: string): string[] {
  const t = text.normalize('NFKC');
  return namedKinds(question).filter((name) => !new RegExp([...name].map(escape).join(`[${CJK_RANGES}]{0,2}`), 'u').test(t));
}
