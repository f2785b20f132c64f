/**
 * The kind of benefit, fee or leave a question names — 陪产假, 育儿假, 高温费, 失业金, 年终奖, a
 * "Christmas bonus" — and whether the passage an answer comes from names it too. A question about 陪产假 answered from
 * the 产假 rule ("98天") is the confident wrong answer a company bot must not give: the passage is
 * about another kind, however many words it shares. So the "don't know" gate refuses an answer
 * whose passage does not name the kind asked about.
 *
 * A name is matched in order with up to two characters between (年假 is the 年休假 a rule writes,
 * 春节假 the 春节假期); the generic 请假 / 休假 / 放假 (a verb + 假) name no kind. Measured on every
 * split of the sample handbook's Chinese questions and the Chinese dev set: it withheld five wrong
 * answers to unanswerable questions and no right one (docs/fine-tuning.md); the English names changed
 * no answer on the English sets (all splits) and refuse "Do we get a Christmas bonus?", which was
 * answered with the referral bonus.
 */
import { CJK_RANGES } from '../model/text/cjk.ts';
import { searchTerms } from './search-terms.ts';
import { workplaceExpansions } from './workplace-words.ts';

const KIND_SUFFIX = '假|费|金|险|奖|补贴|津贴';
const NAMED = new RegExp(`([${CJK_RANGES}]{1,2})(${KIND_SUFFIX})`, 'gu');
/** Question words, counts, pronouns and verbs that stand before a name without being part of it. */
const NOT_NAME = /^[几天多少的有个给每了是我你他她这那些各能拿领交发扣按没来打算请休放从完]+/u;
/** Words with the suffix that name no kind: "免费" is free, "保险" any insurance. */
const GENERIC = new Set(['免费', '收费', '付费', '花费', '消费', '保险', '现金', '资金']);
/** A verb before 假 is asking for leave, not naming a kind of it. */
const LEAVE_VERB = /[请休放]$/u;

/**
 * English names a kind with a noun before bonus, allowance, insurance…: "Christmas bonus" is not
 * the "referral bonus" a passage describes. Leave is left out: askers name leave in their own
 * words ("baby leave" for parental leave) far more often than the handbook does.
 */
const NAMED_EN = /\b([a-z]+)\s+(bonus(?:es)?|allowances?|stipends?|subsid(?:y|ies)|insurance|fees?)\b/giu;
/** Words before the kind that say which one only as much as any: "my bonus", "the annual fee". */
const NOT_NAME_EN = new Set(['a', 'an', 'the', 'my', 'our', 'your', 'any', 'some', 'this', 'that', 'what', 'which', 'much', 'many', 'extra', 'special', 'annual', 'yearly', 'monthly', 'daily', 'weekly', 'paid', 'company', 'of', 'for', 'get', 'is', 'there', 'total', 'maximum', 'max']);

/** The kinds a question names ("老婆生孩子，男方能休几天陪产假？" → ["陪产假"], "Christmas bonus" → ["christmas"]). */
export function namedKinds(question: string): string[] {
  const out: string[] = [];
  for (const m of question.normalize('NFKC').toLowerCase().matchAll(NAMED_EN)) if (!NOT_NAME_EN.has(m[1]!) && !out.includes(m[1]!)) out.push(m[1]!);
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

/** The kinds the question names that the text does not (Chinese: each character in order, ≤ 2 between; English: the word's stem). */
export function kindsMissing(question: string, text: string): string[] {
  const t = text.normalize('NFKC');
  let words: Set<string> | undefined;
  return namedKinds(question).filter((name) => {
    if (/^[a-z]+$/.test(name)) return !(words ??= new Set(searchTerms(t, { stem: true }))).has(searchTerms(name, { stem: true })[0] ?? name);
    if (new RegExp([...name].map(escape).join(`[${CJK_RANGES}]{0,2}`), 'u').test(t)) return false;
    // 年终奖 is the 奖金 a handbook writes (workplace-words.ts): the same kind in its words.
    return !workplaceExpansions(name, []).some((w) => t.includes(w));
  });
}

/**
 * "Is there a prayer room …?", "Can I bring my dog …?", "上海办公室有母婴室吗？": a question whether
 * something exists (or is offered, or allowed along) is about that thing, and a passage that never
 * names it cannot answer yes or no — however much else it shares ("Rotterdam", "office"). In the
 * sample handbook's and the dev sets' questions these were mostly the unanswerable ones, answered
 * from a passage about the place (docs/fine-tuning.md).
 */
const EXISTS_EN =
  /(?:^|[.?!]\s+)(?:is there|are there|(?:do|does) (?:we|you|they|employees|staff|the company|the office|[a-z]+ office) (?:have|offer|provide|get)(?= (?:a|an|any) )|can (?:i|we) bring|can (?:i|we) take(?= (?:my|our) ))\s+(?:(?:a|an|any|some|my|our|the|your)\s+)?([a-z][a-z-]*(?:\s+[a-z][a-z-]*){0,2})/u;
/** Where the thing's name ends: a preposition, a clause, a verb that says what is done with it. */
const THING_END_EN = /\s(?:in|at|on|for|to|from|with|near|by|of|and|or|that|which|who|where|when|if|i|we|you|they|can|could|should|will|would|is|are|do|does|did|have|has|so|during|after|before|around|every|each|per)\b.*$/u;
/** Words that name no particular thing: asking whether there is "a limit" or "a way" is asking about the rule. */
const GENERIC_THING_EN = new Set(['limit', 'way', 'rule', 'rules', 'policy', 'option', 'options', 'thing', 'things', 'anything', 'something', 'place', 'time', 'period', 'chance', 'difference', 'problem', 'issue', 'need', 'requirement', 'minimum', 'maximum', 'deadline', 'cap', 'new', 'free', 'extra', 'company', 'office', 'work']);
const EXISTS_ZH = /(?:有没有|有无|提供|能不能带|可以带|能带)([\p{Script=Han}]{2,8}?)(?:吗|呢|[？?，,。]|$)|有([\p{Script=Han}]{2,6}?)吗/u;
/** Chinese words before the thing that say where or whose, not what: 公司的、上海办公室的. */
const NOT_THING_ZH = /^(?:个|什么|没有|员工|公司|办公室|上海|北京|专门的?|免费的?|宠物来?)+/u;

/**
 * "When is the Christmas party?", "Who is our head of marketing?": the event or role asked about is
 * named by its last word (party, marketing) — a passage about Christmas Day or the head of sales
 * does not answer it.
 */
const WHEN_WHO_EN = /(?:^|[.?!]\s+)(?:when|who) (?:is|are|was|will be) (?:the|our|an?) ([a-z0-9][a-z0-9-]*(?:\s+[a-z0-9][a-z0-9-]*){0,3})/u;
/** Where such a name ends: "of" stays inside it (head of marketing), a time or a verb does not. */
const NAMED_END_EN = /\s(?:in|at|on|for|to|from|with|near|by|and|or|that|which|who|where|when|if|i|we|you|they|can|could|should|will|would|is|are|do|does|did|have|has|so|during|after|before|around|every|each|per|this|next|last|held|take|takes|start|starts|happen|happens)\b.*$/u;

/** The thing a question asks the existence of ("Is there a prayer room in …" → "prayer room"), if it is one. */
export function askedThing(question: string): string | undefined {
  const q = question.normalize('NFKC').toLowerCase();
  const en = EXISTS_EN.exec(q)?.[1]?.replace(THING_END_EN, '').trim();
  if (en) {
    const words = en.split(/\s+/).filter((w) => !GENERIC_THING_EN.has(w));
    return words.length ? words.join(' ') : undefined;
  }
  const named = WHEN_WHO_EN.exec(q)?.[1]?.replace(NAMED_END_EN, '').trim().split(/\s+/).pop();
  if (named && !GENERIC_THING_EN.has(named)) return named;
  const m = EXISTS_ZH.exec(question.normalize('NFKC'));
  const zh = (m?.[1] ?? m?.[2])?.replace(NOT_THING_ZH, '');
  return zh && [...zh].length >= 2 ? zh : undefined;
}

/**
 * The thing an existence question asks about when the text does not name it: every English word of
 * it (its stem, or a handbook word workplace-words.ts gives for it), or the Chinese name's
 * characters in order with up to two between (宿舍 meets 员工宿舍); undefined when it is named or
 * the question asks about no thing.
 */
export function thingMissing(question: string, text: string): string | undefined {
  const thing = askedThing(question);
  if (!thing) return undefined;
  const t = text.normalize('NFKC');
  if (/[a-z]/.test(thing)) {
    const words = new Set(searchTerms(t, { stem: true }));
    const named = thing.split(' ').every((w) => {
      const own = searchTerms(w, { stem: true });
      return own.length === 0 || own.some((s) => words.has(s)) || workplaceExpansions(w, own).some((s) => words.has(s));
    });
    return named ? undefined : thing;
  }
  if (new RegExp([...thing].map(escape).join(`[${CJK_RANGES}]{0,2}`), 'u').test(t)) return undefined;
  return workplaceExpansions(thing, []).some((w) => t.includes(w)) ? undefined : thing;
}
