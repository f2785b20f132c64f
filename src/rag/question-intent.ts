/**
 * What kind of answer a question asks for: "how many days" wants a count of days, "when" a date
 * or a weekday, "多少钱" an amount of money, "can I …" a yes or no with its reason. The answerer
 * uses it to propose typed values as direct answers and to prefer sentences that hold one.
 * Rules, not a model: the model then chooses among the candidates (answer-candidates.ts).
 */
import type { ValueKind } from './typed-values.ts';

export interface QuestionIntent {
  /** Value kinds that answer the question, most likely first (empty: a phrase or sentence answers it). */
  kinds: ValueKind[];
  /** Units the question names ("hours", "天"): a count in one of them is the answer. */
  units: string[];
  /** Asks for a person, team or way to reach them. */
  who: boolean;
  /** A yes/no question: the direct answer is the rule that decides it. */
  yesNo: boolean;
}

const TIME_UNITS_EN = ['hours', 'days', 'weeks', 'months', 'years', 'minutes'];
const UNIT_WORDS_EN: [RegExp, string][] = [
  [/\bhours?\b/, 'hour'],
  [/\b(?:days?|business days?|working days?)\b/, 'day'],
  [/\bweeks?\b/, 'week'],
  [/\bmonths?\b/, 'month'],
  [/\byears?\b/, 'year'],
  [/\bminutes?\b/, 'minute'],
  [/\b(?:people|persons|employees|colleagues)\b/, 'people'],
  [/\btimes\b/, 'time'],
  [/\bnights?\b/, 'night'],
];
const UNIT_WORDS_ZH: [RegExp, string][] = [
  [/(?:几|多少)(?:个)?(?:小时|钟头)/u, '小时'],
  [/(?:几|多少)(?:个)?(?:工作日|天|日)/u, '天'],
  [/(?:几|多少)(?:个)?(?:周|星期)/u, '周'],
  [/(?:几|多少)个?月/u, '月'],
  [/(?:几|多少)年/u, '年'],
  [/(?:几|多少)分钟/u, '分钟'],
  [/(?:几|多少)(?:个)?(?:人|名)/u, '人'],
  [/(?:几|多少)次/u, '次'],
];
/** A duration asked for without its unit ("how long", "多久"): any unit of time answers it. */
const DURATION_EN = /\bhow (?:long|fast|quickly|soon|late|early|often|frequently)\b|\bwithin how\b|\bafter how long\b/;
const DURATION_ZH = /多久|多长时间|多长|多少时间|几天内|多少天内/u;
const DURATION_UNITS_ZH = ['天', '日', '工作日', '周', '星期', '月', '年', '小时', '分钟'];
/** Verbs and nouns of money: "how much do I pay", "能报多少", "奖励多少". */
const MONEY_EN = /\b(?:cost|costs|pay|paid|earn|earns|earning|earnings|raise|money|budget|allowance|reimburs\w*|spend|spent|price|fee|fees|worth|salary|per diem|refund\w*|cover\w*|get back|claim|expense\w*|charge\w*|bonus|stipend|subsidy|compensat\w*)\b/;
const MONEY_ZH = /钱|元|费|补贴|餐补|补助|充多少|报销|能报|可报|报多少|付多少|交多少|花多少|拿多少|赔|补偿|奖励|工资|薪|津贴|标准/u;
/** "What is the limit / maximum / budget …": an amount, a count or a share. */
const AMOUNT_NOUN_EN = /\b(?:limit|maximum|max|minimum|cap|budget|allowance|amount|rate|threshold|ceiling|per diem|fees?|price|cost|salary|stipend|subsidy)\b/;

/**
 * "When" that asks: at the start of a question or clause, after "by / until / since", or in an
 * embedded question ("tell me when"). "What happens to my leave when I quit?" asks what, not when.
 */
const WHEN_ASKED = /(?:^|[,;:?!]\s*|\b(?:and|or|but|so|by|until|till|since|from|tell me|know|ask|asked|wonder|wondering|sure|idea|find out|remind me) )when\b/;

export function questionIntent(question: string): QuestionIntent {
  const q = question.normalize('NFKC').toLowerCase();
  const kinds: ValueKind[] = [];
  const units: string[] = [];
  const add = (...k: ValueKind[]) => {
    for (const x of k) if (!kinds.includes(x)) kinds.push(x);
  };
  // English.
  if (/\bwhat (?:percentage|percent|share|portion|fraction)\b|\bhow much (?:of|percent)\b|%/.test(q)) add('percent');
  const howMuch = /\bhow much\b/.test(q);
  if (howMuch && !/\bhow much (?:[a-z]+ )?(?:time|leave|vacation|notice|holiday)\b/.test(q) && (MONEY_EN.test(q) || /\bhow much (?:money|cash)\b/.test(q))) add('money', 'percent');
  // A bare "how much does the company put into my pension" asks for an amount or a share before a count.
  if (howMuch && !/\bhow much (?:[a-z]+ )?(?:time|leave|vacation|notice|holiday)\b/.test(q)) add('money', 'percent');
  // "How is overtime pay calculated?": the rate, a share of pay or an amount.
  if (/\bhow (?:is|are|do you|does the company|do they) (?:[a-z]+ ){0,3}(?:calculated|computed|worked out)\b/.test(q) && MONEY_EN.test(q)) add('percent', 'money');
  // A bare "how much" with a verb of money ("how much can I spend") asks an amount, not a count.
  const moneyOnly = howMuch && MONEY_EN.test(q) && !/\bhow (?:many|long)\b|\bhow much (?:[a-z]+ )?(?:time|leave|vacation|notice|holiday)\b/.test(q) && !DURATION_EN.test(q);
  if (!moneyOnly && (/\bhow (?:many|long)\b|\bhow much (?:[a-z]+ )?(?:time|leave|vacation|notice|holiday)\b|\bhow much\b/.test(q) || DURATION_EN.test(q))) add('count');
  if (/\bhow much\b/.test(q)) add('money', 'percent');
  if (/\bwhat time\b|\bby when\b|\bwhat hours?\b|\bopening hours\b|\bwhen does\b.*\b(?:open|close|start|end)\b/.test(q)) add('time');
  if (WHEN_ASKED.test(q) || /\bwhat date\b|\bwhich date\b|\bdeadline\b|\bby what date\b|\bwhat day\b/.test(q)) add('date', 'weekday', 'time', 'year');
  if (/\bwhich day\b|\bwhat day of the week\b/.test(q)) add('weekday');
  if (/\bwhat year\b|\bwhich year\b|\bsince when\b|\bfounded\b/.test(q)) add('year', 'date');
  // "per year" in "how much leave do I get per year" is the period, not the unit asked for.
  const PERIOD_EN = /\b(?:per|a|an|each|every|one|in a|in one|in any) (?:calendar |fiscal |working |business )?(hour|day|week|month|year)\b/g;
  const periods = new Set([...q.matchAll(PERIOD_EN)].map((m) => m[1]!));
  if (DURATION_EN.test(q) || /\bhow much (?:[a-z]+ )?(?:time|leave|vacation|notice|holiday)\b/.test(q)) {
    for (const u of TIME_UNITS_EN) if (!periods.has(u.replace(/s$/, ''))) units.push(u.replace(/s$/, ''));
  }
  if (kinds.length === 0 && /^(?:what|which)\b|\bwhat(?:'s| is| are)\b/.test(q) && AMOUNT_NOUN_EN.test(q)) add(MONEY_EN.test(q) || /\bspending|card\b/.test(q) ? 'money' : 'count', 'money', 'percent', 'count');
  // Nor is the asker's own case, a number with its unit ("I have been here 6 years, how much leave…").
  const unitsNamed = q
    .replace(PERIOD_EN, ' ')
    // …nor a point in time ("until the same time next year").
    .replace(/\b(?:next|last|this|previous|coming|following) (?:hour|day|week|month|year)\b/g, ' ')
    // …nor an ordinal one ("how much of it is mine after the first year": a share, not years).
    .replace(/\b(?:first|second|third|fourth|fifth|final|\d+(?:st|nd|rd|th)) (?:hour|day|week|month|year)s?\b/g, ' ')
    .replace(/\b\d+(?:\.\d+)?[\s-]*(?:hours?|days?|weeks?|months?|years?|minutes?|nights?)\b/g, ' ');
  // "the max number of … hours" asks "how many hours" too.
  const countAsked = /\bhow (?:many|much|long)\b|\bnumber of\b/.test(q);
  for (const [re, unit] of UNIT_WORDS_EN) if (countAsked && re.test(unitsNamed) && !units.includes(unit)) units.unshift(unit);
  // Chinese.
  if (/多少|几块|几千|几万/u.test(q) && MONEY_ZH.test(q)) add('money', 'percent');
  if (/百分之|比例|几成|多少比例|打几折/u.test(q)) add('percent');
  // "加班费怎么算？": the rate that computes it, a share of pay or an amount.
  if (/怎么算|如何计算|怎么计算|怎样计算|怎么给|按什么标准/u.test(q) && MONEY_ZH.test(q)) add('percent', 'money');
  // Not 这几天 / 前几年 ("these days", "the last few years"): those point, they do not ask.
  // 几月 without 个 asks for a month by name, a date; 几个月 a number of months.
  if (/(?<!个)几月|哪个月|几月份/u.test(q)) add('date');
  if (/多少|(?<![这那前后头])几[个天周年次人名小分日]/u.test(q) || DURATION_ZH.test(q)) add('count');
  if (DURATION_ZH.test(q)) for (const u of DURATION_UNITS_ZH) if (!units.includes(u)) units.push(u);
  if (/几点|什么时间|几时/u.test(q)) add('time');
  if (/什么时候|何时|哪[一两几]?天|几号|截止|日期|时间段/u.test(q)) add('date', 'weekday', 'time');
  // 几倍: a multiple, written 二倍 or 百分之三百 / 300%.
  if (/几倍|多少倍/u.test(q)) {
    add('percent', 'count');
    units.push('倍');
  }
  if (/星期几|周几/u.test(q)) add('weekday');
  if (/哪一?年/u.test(q)) add('year');
  for (const [re, unit] of UNIT_WORDS_ZH) if (re.test(q) && !units.includes(unit)) units.push(unit);
  // "多少天", "how many days": the unit is named right after the question word, so a count in it is
  // the answer even when the question also speaks of pay ("工资最长多少天结一次" wants 十五日, not 1000元).
  const countFirst = /\bhow many (?:working |business |calendar )?(?:hours?|days?|weeks?|months?|years?|minutes?|nights?|times)\b/.test(q) || /(?:几|多少)(?:个)?(?:小时|钟头|工作日|天|周|星期|月|年|分钟|次)/u.test(q);
  if (countFirst && kinds.includes('count') && !/多少钱|\bhow much money\b/u.test(q)) kinds.unshift(...kinds.splice(kinds.indexOf('count'), 1));
  const who = /\bwho\b|\bwhom\b|\bcontact\b|\breach out\b|\bwhich team\b|\bask\b.*\bwho\b|找谁|联系谁|谁|哪个部门|找哪/u.test(q);
  // Where to write or call: an address or a number answers it, and answers "who" well too.
  if (/\be-?mail address\b|\bwhich (?:e-?mail|address)\b|\bwhere (?:do|should|can|must) (?:i|we) (?:send|forward|report|mail|e-?mail)\b|邮箱|邮件地址|发到哪|发给哪/u.test(q)) add('email');
  // Not a bare "phone" ("How do I claim my phone bill?") nor "电话费".
  if (/\b(?:what|which) (?:phone )?number\b|\bphone number\b|\b(?:do|should|can) (?:i|we) (?:call|phone|ring)\b|\bextension\b|\bext\b|\bhotline\b|\bdial\b|电话(?!费)|分机|热线|打哪个/u.test(q)) add('phone');
  // "电话是多少": 多少 asks for the number, not a count.
  if (kinds.includes('phone') && /(?:电话|分机|热线|号码)[^，,。？?]{0,4}多少/u.test(q)) kinds.unshift(...kinds.splice(kinds.indexOf('phone'), 1));
  // "HR的邮箱是多少": the address, not a count.
  if (kinds.includes('email') && /(?:邮箱|邮件地址|email|e-mail)[^，,。？?]{0,4}(?:多少|是什么|是啥)/u.test(q)) kinds.unshift(...kinds.splice(kinds.indexOf('email'), 1));
  // "Who do I contact…", "找谁": a way to reach them answers; "who is our DPO" wants the person, the sentence naming them.
  if (/\bwho (?:do|should|can|must|would) (?:i|we) (?:contact|ask|call|e-?mail|tell|report|talk|go|write)\b|\bcontact\b|\breach out\b|找谁|联系谁|问谁|找哪|联系哪/u.test(q)) add('email', 'phone');
  const yesNo =
    kinds.length === 0 &&
    !who &&
    (/^(?:can|could|may|am|is|are|do|does|did|should|will|would|have|has|must)\b/.test(q.trim()) || /吗[？?]?$|能不能|可不可以|是不是|是否|有没有|可以.*吗/u.test(q));
  return { kinds, units, who, yesNo };
}
