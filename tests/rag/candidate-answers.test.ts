import { beforeAll, describe, expect, it } from 'vitest';
import type { AnswerEvent, AnswerRequest, ConversationTurn, Source } from '../../src/core/index.ts';
import { LocalKnowledgeBase } from '../../src/rag/local-knowledge-base.ts';
import { answerUnits, plainText, proposeCandidates, scoreUnits } from '../../src/rag/answer-candidates.ts';
import { CandidateAnswerer, composeAnswer, directAnswerText, type CandidateScorer } from '../../src/rag/candidate-answerer.ts';
import { answerByCase } from '../../src/rag/answer-cases.ts';
import { DEFAULT_SELECTOR, selectorAccuracy, selectorLossAndGradient, selectorScore, trainSelector, type SelectorGroup } from '../../src/rag/answer-selector.ts';
import { CANDIDATE_FEATURES, type CandidateFeatures } from '../../src/rag/answer-candidates.ts';
import { questionIntent } from '../../src/rag/question-intent.ts';
import { typedValues } from '../../src/rag/typed-values.ts';
import { parseNumber, statedQuantities, statedRanges, tierFit } from '../../src/rag/stated-ranges.ts';
import { askedThing, kindsMissing, namedKinds, thingMissing } from '../../src/rag/named-kinds.ts';
import { workplaceExpansions } from '../../src/rag/workplace-words.ts';
import { searchTerms } from '../../src/rag/search-terms.ts';
import { answerLength, evaluateAnswers } from '../../src/training/eval/answer-eval.ts';
import { isRightCandidate } from '../../src/training/sft/selector-data.ts';
import { tempFolder } from './fixtures.ts';

const LEAVE = `# Leave

## Annual leave

Everyone on a full-time contract gets annual leave by years of service:

| Years of service | Annual leave |
|---|---|
| 0–4 years | **25 days** |
| 5–9 years | 26 days |

You may carry over at most 5 days into the next year. Carried-over days expire on **1 July**.

## Sick leave

Report sick to your manager before 09:30 on the first day. The company pays 70% of your salary from the second year of illness.
`;
const IT = `# IT

## Lost devices

Report a lost or stolen laptop in Beacon within 1 hour of noticing. If it was stolen, file a police report.
`;
const ZH = `# 年假

## 年假天数

| 累计工作年限 | 法定年假 |
|---|---|
| 满 1 年不满 10 年 | 5 天 |
| 满 10 年不满 20 年 | 10 天 |

试用期员工的年假在转正后生效。报销须在费用发生后 30 天内提交，逾期不予报销。
`;

function ask(question: string, history: ConversationTurn[] = []): AnswerRequest {
  return { question, history, user: { platform: 'web', id: 'u' }, channel: 'c' };
}

async function collect(events: AsyncIterable<AnswerEvent>) {
  let text = '';
  let sources: Source[] = [];
  let direct: string | undefined;
  let prompt = '';
  const order: string[] = [];
  for await (const e of events) {
    if (order.at(-1) !== e.type) order.push(e.type);
    if (e.type === 'token') text += e.text;
    else if (e.type === 'sources') sources = e.sources;
    else {
      direct = e.direct;
      prompt = e.prompt;
    }
  }
  return { text, sources, direct, prompt, order };
}

describe('typed values and question intent', () => {
  it('finds amounts, percentages, times, dates and counts with their unit, Chinese numerals included', () => {
    const found = typedValues('Pay 70% from 1 July, at 09:30, for 25 days, €40 per month; 试用期不得超过二个月，第二份合同');
    expect(found.map((v) => [v.kind, v.text, v.unit ?? ''])).toEqual([
      ['percent', '70%', ''],
      ['date', '1 July', ''],
      ['time', '09:30', ''],
      ['count', '25 days', 'days'],
      ['money', '€40 per month', ''],
      ['count', '二个月', '个月'],
    ]);
    // A range is one value; a colloquial unit is a unit.
    expect(typedValues('a salary increase of typically 8–12%, or 3 个钟头').map((v) => v.text)).toEqual(['8–12%', '3 个钟头']);
    // A day of every month is a date (a pay day), not a count of days.
    expect(typedValues('发薪日为每月 10 日，发放上一个自然月的工资').map((v) => [v.kind, v.text])).toEqual([['date', '每月 10 日']]);
    expect(typedValues('Salaries are paid on the 25th of each month.').map((v) => [v.kind, v.text])).toEqual([['date', 'the 25th of each month']]);
    // A span is one value; characters are a unit.
    expect(typedValues('Core hours are 10:00–15:30; 汇算时间为 3 月 1 日至 6 月 30 日; peak: 15 December – 2 January; at least 14 characters').map((v) => [v.kind, v.text])).toEqual([
      ['time', '10:00–15:30'],
      ['date', '3 月 1 日至 6 月 30 日'],
      ['date', '15 December – 2 January'],
      ['count', '14 characters'],
    ]);
    expect(questionIntent('How often do we get a new laptop?').kinds).toContain('count');
    expect(questionIntent('国庆节让我上班，工资该给几倍？')).toMatchObject({ kinds: ['percent', 'count'], units: ['倍'] });
    // One describing word may stand between a number and its unit, a preposition may not.
    expect(typedValues('Every employee receives 2 wellbeing days per year; 5 to 10 days').map((v) => v.text)).toEqual(['2 wellbeing days', '10 days']);
    // Where to write or call.
    expect(typedValues('Rotterdam IT desk: Floor 4, phone ext. 4400; 请联系何琳（分机 8035，payroll-sha@lumenharbor.com）; China: 400-820-6631').map((v) => [v.kind, v.text])).toEqual([
      ['phone', '4400'],
      ['phone', '8035'],
      ['email', 'payroll-sha@lumenharbor.com'],
      ['phone', '400-820-6631'],
    ]);
    expect(questionIntent('I got a suspicious email. Where do I send it?').kinds).toEqual(['email']);
    expect(questionIntent('What number do I call to report a concern?').kinds).toEqual(['phone']);
    expect(questionIntent('How do I claim my phone bill?').kinds).not.toContain('phone');
    expect(questionIntent('薪资有问题找谁？').kinds).toEqual(['email', 'phone']);
    // "Who is …" asks for the person (the sentence naming them), not an address.
    expect(questionIntent('Who is our Data Protection Officer?').kinds).toEqual([]);
    const phish = proposeCandidates('Where do I send a phishing email?', [{ title: 'IT > Phishing', text: 'Use the Report Phish button, or forward the message to phish@lumenharbor.com.' }]);
    expect(phish[0]!.text).toBe('phish@lumenharbor.com');
    // …and stays written as it is (no capital letter on an address), while a phrase starts with one.
    expect([directAnswerText('phish@lumenharbor.com', false), directAnswerText('25 days', false), directAnswerText('business class', false)]).toEqual(['phish@lumenharbor.com', '25 days', 'Business class']);
    // A month by its number is a date; with 个 it is a number of months.
    expect(typedValues('随次年 1 月工资一起发放，试用期 3 个月').map((v) => [v.kind, v.text])).toEqual([['date', '1 月'], ['count', '3 个月']]);
    expect(questionIntent('消防演练安排在几月？').kinds[0]).toBe('date');
  });

  it('reads what a question asks for', () => {
    expect(questionIntent('How many days of annual leave do I get?')).toMatchObject({ kinds: ['count'], units: ['day'], yesNo: false });
    expect(questionIntent('How long before my laptop locks itself?').units).toContain('minute');
    expect(questionIntent('How much can I spend on a client dinner?').kinds).toContain('money');
    // A bare "how much" with a verb of money asks an amount: "14 days" is no answer to it.
    expect(questionIntent('I need a hotel tonight, how much can I spend?').kinds).not.toContain('count');
    expect(questionIntent('How much leave can I carry over?').kinds).toContain('count');
    expect(questionIntent('When do carried-over days expire?').kinds[0]).toBe('date');
    expect(questionIntent('Who do I contact if my laptop is stolen?').who).toBe(true);
    expect(questionIntent('Can I work from the beach for a month?').yesNo).toBe(true);
    expect(questionIntent('酒店一晚最多能报多少？').kinds[0]).toBe('money');
    expect(questionIntent('试用期是多长？').units).toEqual(expect.arrayContaining(['天', '月']));
    expect(questionIntent('How much more will I earn if I move up a level?').kinds[0]).toBe('money');
    expect(questionIntent('一个月最多能加多少个钟头的班？').units).toEqual(['小时']);
    expect(questionIntent("What's the max number of flex hours I can have saved up?").units).toEqual(['hour']);
    expect(questionIntent('HR的电话是多少？').kinds[0]).toBe('phone');
    // "next year" is a point in time, not the unit asked for.
    expect(questionIntent('How much do I have left until the same time next year?').units).toEqual([]);
  });
});

describe('answer units and candidates', () => {
  it('reads table rows with their header, drops markdown, and splits sentences', () => {
    const units = answerUnits(LEAVE.split('## Annual leave')[1]!.split('## Sick leave')[0]!);
    expect(units).toEqual([
      'Everyone on a full-time contract gets annual leave by years of service:',
      'Years of service: 0–4 years; Annual leave: 25 days',
      'Years of service: 5–9 years; Annual leave: 26 days',
      'You may carry over at most 5 days into the next year.',
      'Carried-over days expire on 1 July.',
    ]);
    expect(plainText('See the **[portal](https://x.example)** and `vpn`.')).toBe('See the portal and vpn.');
    expect(plainText('You will have 8 weeks until March 2023\\. Costs 5\\* 2 \\[approx\\]')).toBe('You will have 8 weeks until March 2023. Costs 5* 2 [approx]');
  });

  it('joins hard-wrapped lines of a paragraph or list item, so a sentence or a link may cross a line break', () => {
    const wrapped = '### Issues\n\nIf the card is lost, follow [these\ninstructions](https://x.example/lost).\n\nAll employees who take transit to work are eligible for transit\nsubsidies. Enroll below.\n\n- one item that wraps\n  onto a second line.\n- item two\n\n| a | b |\n|---|---|\n| 1 | 2 |\nAfter the table.';
    expect(answerUnits(wrapped)).toEqual([
      'Issues',
      'If the card is lost, follow these instructions.',
      'All employees who take transit to work are eligible for transit subsidies.',
      'Enroll below.',
      'one item that wraps onto a second line.',
      'item two',
      'a: 1; b: 2',
      'After the table.',
    ]);
  });

  it('ends a sentence at a full stop before a space, never inside a number, an address or a name', () => {
    expect(answerUnits('Private car use is reimbursed at **€0.23 per km**. Mail invoices@lumenharbor.com. 年假 5 天。病假 10 天')).toEqual([
      'Private car use is reimbursed at €0.23 per km.',
      'Mail invoices@lumenharbor.com.',
      '年假 5 天。',
      '病假 10 天',
    ]);
    // A list item that continues its lead-in sentence is read with it; one that starts its own sentence is not.
    expect(answerUnits('Rotterdam colleagues therefore:\n\n- work from the office **at least 2 days per week**;\n- Tuesday is the anchor day.\n\n## Next\n\n- can stand alone')).toEqual([
      'Rotterdam colleagues therefore:',
      'Rotterdam colleagues therefore work from the office at least 2 days per week;',
      'Tuesday is the anchor day.',
      'Next',
      'can stand alone',
    ]);
    // What follows a semicolon in a labelled line is still about the label.
    expect(answerUnits('- **LHR-Guest**: for visitors; the password changes every Monday.\n- 餐补：每天 ¥30；周末加班另计。\n- Note: see above; Also this.')).toEqual([
      'LHR-Guest: for visitors;',
      'LHR-Guest: the password changes every Monday.',
      '餐补：每天 ¥30；',
      '餐补：周末加班另计。',
      'Note: see above;',
      'Also this.',
    ]);
    // Nor after "e.g." / "i.e.", and a clause never ends inside brackets.
    const cancel = 'You are responsible for cancelling all reservations (e.g. flight, hotel, rental car) if your event is not approved.';
    expect(answerUnits(cancel)).toEqual([cancel]);
    const texts = proposeCandidates('Do I cancel my reservations if the event is not approved?', [{ title: 'Travel', text: cancel }]).map((c) => c.text);
    expect(texts.filter((t) => /^(?:flight|hotel|rental car)|^e\.g/.test(t))).toEqual([]);
  });

  it('prefers a total to its parts', () => {
    const text = '| 累计工作年限 | 法定年假 | 福利年假 | 合计 |\n|---|---|---|---|\n| 满 1 年不满 10 年 | 5 天 | 7 天 | 12 天 |';
    expect(proposeCandidates('年假有多少天？', [{ title: '年假 > 年假天数', text }])[0]!.text).toBe('12 天');
    // …and the total of the row whose tier holds the asker's years.
    const rows = `${text}\n| 满 10 年不满 20 年 | 10 天 | 6 天 | 16 天 |\n| 满 20 年及以上 | 15 天 | 5 天 | 20 天 |`;
    expect(proposeCandidates('工作满12年了，年假一共几天？', [{ title: '年假 > 年假天数', text: rows }])[0]!.text).toBe('16 天');
  });

  it('answers "how long" from the column that measures the length, not from a lead time, and "how much" with an amount first', () => {
    const text = [
      '| Type | Duration | Pay |',
      '|---|---|---|',
      "| Paid parental leave | 9 weeks, in the child's first year | 70% from UWV |",
      '',
      'Apply for birth and parental leave at least **2 months** before the start.',
    ].join('\n');
    expect(proposeCandidates('How long is parental leave?', [{ title: 'Leave > Family-related leave', text }])[0]!.text).toBe('9 weeks');
    // A bare "how much" asks for an amount or a share before a count; "how much leave" stays a count.
    expect(questionIntent('How much does the company put into my pension?').kinds[0]).toBe('money');
    expect(questionIntent('How much annual leave do I get?').kinds[0]).toBe('count');
    expect(questionIntent('What is the per diem in Germany?').kinds[0]).toBe('money');
    // "How is it calculated" asks for the rate: a share of pay first.
    expect(questionIntent('加班费怎么算？').kinds[0]).toBe('percent');
    expect(questionIntent('How is overtime pay calculated?').kinds[0]).toBe('percent');
    const pension = '| Contribution | Percentage of pensionable salary |\n|---|---|\n| Employer | 8% |\n| Employee | 4% |\n\nYou can change your profile after 5 years.';
    expect(proposeCandidates('How much does the employer put into my pension?', [{ title: 'Benefits > Pension', text: pension }])[0]!.text).toBe('8%');
  });

  it("reads an asker's everyday words as the handbook's (vacation → annual leave), and never answers with a number from a column's header", async () => {
    expect(workplaceExpansions('How many vacation days do I have?', searchTerms('How many vacation days do I have?', { stem: true }))).toEqual(['leav', 'annual']);
    expect(workplaceExpansions('My dad died, how many days off do I get?', searchTerms('My dad died, how many days off do I get?', { stem: true }))).toEqual(['leav', 'bereav', 'parent']);
    expect(workplaceExpansions('在家办公可以吗？', searchTerms('在家办公可以吗？', { stem: true }))).toEqual(['远程', '居家']);
    // Expansions are of whole words: "ill" is not in "bill", a lead is not a boss.
    expect(workplaceExpansions('How do I claim my phone bill?', searchTerms('How do I claim my phone bill?', { stem: true }))).toEqual([]);
    const kb = new LocalKnowledgeBase(':memory:');
    const table = '| Years of service | Annual leave (full-time, 40 hours/week) |\n|---|---|\n| 0–4 years | 25 days |\n| 5–9 years | 26 days |';
    await kb.addPaths([tempFolder({ 'leave.md': `# Leave\n\n## Annual leave\n\n${table}\n\n## Special leave\n\n- **Bereavement:** 5 working days for the death of a partner, child or parent; 2 working days for a grandparent.\n`, 'it.md': IT })]);
    // "vacation" names the "Annual leave" column: the cases, not one guessed row, and never the header's "40 hours".
    expect((await collect(new CandidateAnswerer({ kb }).answer(ask('How much vacation do I get?')))).direct).toBe('0–4 years: 25 days; 5–9 years: 26 days');
    expect((await collect(new CandidateAnswerer({ kb }).answer(ask('My dad died, how many days off do I get?')))).direct).toBe('5 working days');
    kb.close();
  });

  it('answers from the cell of a table row that the question names, and a table with a case per column from that case only', () => {
    const offices = [
      '| | Rotterdam (HQ) | Shanghai |',
      '|---|---|---|',
      '| Address | Maashaven Zuidzijde 42, Rotterdam | 1288 Zhangheng Road, Shanghai |',
      '| Facilities contact | Femke Alblas — facilities-rtm@example.com | Wang Shan — facilities-sha@example.com |',
    ].join('\n');
    const passages = [{ title: 'Offices > Our offices', text: offices }];
    expect(proposeCandidates("What's the address of the Shanghai office?", passages)[0]!.text).toBe('Shanghai: 1288 Zhangheng Road, Shanghai');
    expect(proposeCandidates('Who is the facilities contact in Shanghai? What is their e-mail address?', passages)[0]!.text).toBe('facilities-sha@example.com');
    // In a usual table every column is an attribute of the row: the total still answers "how many days".
    const rows = '| 累计工作年限 | 法定年假 | 福利年假 | 合计 |\n|---|---|---|---|\n| 满 1 年不满 10 年 | 5 天 | 7 天 | 12 天 |';
    expect(proposeCandidates('我工作了 5 年，一年有几天年假？', [{ title: '年假', text: rows }])[0]!.text).toBe('12 天');
  });

  it('answers with the tiers of a rule written one to a sentence or list item when the question states no case', () => {
    const law = { title: '职工带薪年休假条例', text: '第三条 职工累计工作已满1年不满10年的，年休假5天；已满10年不满20年的，年休假10天；已满20年的，年休假15天。\n\n国家法定休假日不计入年休假的假期。' };
    const chosen = (question: string, passage: { title: string; text: string }) => {
      const [best] = proposeCandidates(question, [passage]);
      return answerByCase(question, best!, passage.text, /\p{Script=Han}/u.test(question)) ?? best!.text;
    };
    expect(chosen('年假有几天？', law)).toBe('职工累计工作已满1年不满10年：5天；已满10年不满20年：10天；已满20年：15天');
    expect(chosen('我工作12年了，年假有几天？', law)).toBe('10天');
    const accrual = { title: 'Leave > Annual leave', text: "Annual leave accrues based on how long you've worked:\n\n* Fewer than 3 years: 4 hours per pay period\n* Between 3 and 15 years: 6 hours per pay period\n* 15+ years: 8 hours per pay period\n" };
    expect(chosen('How many hours of annual leave do I accrue per pay period?', accrual)).toBe('Fewer than 3 years: 4 hours; Between 3 and 15 years: 6 hours; 15+ years: 8 hours');
  });

  it('reads IT in capitals as the department, and "contact" as the asking, not the topic', async () => {
    expect(searchTerms('How do I contact IT?')).toContain('itdept');
    expect(searchTerms('Is it open?')).not.toContain('itdept');
    expect(questionIntent('HR的邮箱是多少？').kinds[0]).toBe('email');
    const kb = new LocalKnowledgeBase(':memory:');
    await kb.addPaths([
      tempFolder({
        'it.md': '# IT and Security\n\n## Getting help\n\n| Channel | Details |\n|---|---|\n| Email | helpdesk@example.com |\n| IT desk | Floor 4, phone ext. 4400 |\n',
        'privacy.md': '# Data protection\n\n## Who to contact\n\n| Role | Name | Contact |\n|---|---|---|\n| Data Protection Officer | Hanneke Voskuil | dpo@example.com |\n',
      }),
    ]);
    const { direct } = await collect(new CandidateAnswerer({ kb }).answer(ask('How do I contact IT?')));
    expect(direct).toMatch(/helpdesk@example\.com|4400/);
    kb.close();
  });

  it("never offers the asker's own words back as the answer", () => {
    const passages = [{ title: 'Timesheets > Codes', text: 'Use code 670 for:\n\n- Federal holidays,\n- Vacations,\n- Sick leave.' }];
    const offered = proposeCandidates('How much vacation do I get?', passages).map((c) => c.text);
    expect(offered.length).toBeGreaterThan(0);
    expect(offered.filter((t) => /^vacations?\W*$/i.test(t))).toEqual([]);
  });

  it('reads "when" as a question only where it asks, and an example as an illustration of a rule', () => {
    expect(questionIntent('What happens to my leave when I quit?').kinds).toEqual([]);
    expect(questionIntent('Can you tell me when payday is?').kinds[0]).toBe('date');
    expect(questionIntent('Until when can I use carried-over days?').kinds[0]).toBe('date');
    // The same words in an example and in the rule it illustrates: the rule, even from the passage ranked second.
    const example = { title: 'Leaving', text: 'For example, if you resign on 12 March, your leave is paid out in April.' };
    const rule = { title: 'Leaving', text: 'Leave not taken when you resign is paid out with the final salary.' };
    expect(scoreUnits('What happens to my leave when I resign?', [example, rule])[0]!.text).toBe(rule.text);
  });

  it('proposes the value the question asks for, in its unit, first; the first table row wins a tie', () => {
    const passages = [{ title: 'Leave > Annual leave', text: LEAVE.split('## Annual leave')[1]!.split('## Sick leave')[0]! }];
    const candidates = proposeCandidates('How many days of annual leave do I get?', passages);
    expect(candidates[0]).toMatchObject({ text: '25 days', kind: 'value' });
    // Values in another unit ("0–4 years") are not answers to "how many days".
    expect(candidates.map((c) => c.text)).not.toContain('0–4 years');
    expect(proposeCandidates('Until when can I use carried-over days?', passages)[0]!.text).toBe('1 July');
  });

  it("answers a tiered rule with the tier that holds the asker's case, in any unit of time", () => {
    const passages = [{ title: 'Leave > Annual leave', text: LEAVE.split('## Annual leave')[1]!.split('## Sick leave')[0]! }];
    expect(proposeCandidates("I've been here 6 years. How many days of annual leave do I get?", passages)[0]!.text).toBe('26 days');
    expect(proposeCandidates("I've been here 3 years. How many days of annual leave do I get?", passages)[0]!.text).toBe('25 days');
    const law = '劳动合同期限三个月以上不满一年的，试用期不得超过一个月；劳动合同期限一年以上不满三年的，试用期不得超过二个月；三年以上固定期限和无固定期限的劳动合同，试用期不得超过六个月。';
    // 两年 is 730 days: inside "一年以上不满三年", outside the tiers counted in months and the open one from three years.
    expect(proposeCandidates('签了两年合同，试用期最多能有多久？', [{ title: '劳动合同法 > 试用期', text: law }])[0]!.text).toBe('二个月');
    expect(proposeCandidates('签了五年合同，试用期最多能有多久？', [{ title: '劳动合同法 > 试用期', text: law }])[0]!.text).toBe('六个月');
    const leave = '职工累计工作已满1年不满10年的，年休假5天；已满10年不满20年的，年休假10天；已满20年的，年休假15天。';
    expect(proposeCandidates('我工作已经12年了，每年有几天年假？', [{ title: '年休假', text: leave }])[0]!.text).toBe('10天');
  });

  it('reads the unit a question names after its question word before the pay it speaks of, and 日 as 天', () => {
    const text = '非全日制用工小时计酬标准不得低于当地最低小时工资标准，例如 1000元。非全日制用工劳动报酬结算支付周期最长不得超过十五日。';
    expect(questionIntent('我做小时工，工资最长多少天得结一次？').kinds[0]).toBe('count');
    expect(questionIntent('加班工资是多少钱？').kinds[0]).toBe('money');
    expect(proposeCandidates('我做小时工，工资最长多少天得结一次？', [{ title: '非全日制用工', text }])[0]!.text).toBe('十五日');
  });

  it("does not answer with the asker's own numbers, with a condition's bound, or with a cap for another period", () => {
    const holiday = 'For example: you typically work 10 hours on Thursdays. You are given 8 hours for the paid holiday, and you work 2 extra hours that week.';
    // "10-hour Thursdays" is the asker's case: "10 hours" is not proposed at all.
    const echo = proposeCandidates('I normally do 10-hour Thursdays and Christmas lands on a Thursday. How much holiday time do I get?', [{ title: 'Work schedules', text: holiday }]);
    expect(echo.map((c) => c.text)).not.toContain('10 hours');
    expect(echo[0]!.text).toBe('8 hours');
    // "fewer than 10 days per pay period" is when a rule applies, not what it grants.
    const rule = 'Same as Variable Week, but you may work fewer than 10 days per pay period. You are given 8 hours for a holiday.';
    expect(proposeCandidates('How much holiday time do I get?', [{ title: 'Work schedules', text: rule }])[0]!.text).toBe('8 hours');
    expect(tierFit(rule, rule.indexOf('10 days'), [])).toBeLessThan(0);
    // …but "up to 30 days" is the grant, and "vest over 4 years" a duration.
    expect(tierFit('You can take up to 30 days of leave', 'You can take '.length + 6, [])).toBe(0);
    expect(tierFit('Options vest over 4 years', 'Options vest over '.length, [])).toBe(0);
    // 每月 asked: the monthly cap, not the daily one beside it.
    const law = '延长工作时间每日不得超过三小时，但是每月不得超过三十六小时。';
    expect(proposeCandidates('一个月最多能加多少小时班？', [{ title: '工作时间', text: law }])[0]!.text).toBe('三十六小时');
    expect(proposeCandidates('一天最多能加多少小时班？', [{ title: '工作时间', text: law }])[0]!.text).toBe('三小时');
  });

  it('answers with the rule before its special cases, unless the question raises the case', () => {
    const law = '女职工生育享受98天产假，其中产前可以休假15天；难产的，增加产假15天；生育多胞胎的，每多生育1个婴儿，增加产假15天。';
    expect(proposeCandidates('产假有多少天？', [{ title: '女职工劳动保护特别规定', text: law }])[0]!.text).toBe('98天');
    expect(proposeCandidates('难产的话产假有多少天？', [{ title: '女职工劳动保护特别规定', text: law }])[0]!.text).toBe('15天');
  });

  it('reads "per year" as the period, a newcomer as zero years, 这几天 as pointing, and 餐补 as money', () => {
    const passages = [{ title: 'Leave > Annual leave', text: LEAVE.split('## Annual leave')[1]!.split('## Sick leave')[0]! }];
    expect(questionIntent('How much annual leave do I get per year?').units).not.toContain('year');
    expect(statedQuantities('I just joined full-time. How much annual leave do I get per year?')).toEqual([0]);
    expect(proposeCandidates('I just joined full-time. How much annual leave do I get per year?', passages)[0]!.text).toBe('25 days');
    expect(questionIntent('我请假刚好跨了一个周末和中秋节，这几天要从年假里扣吗？').kinds).toEqual([]);
    expect(questionIntent('公司每天往饭卡里充多少餐补？').kinds[0]).toBe('money');
    // The asker's own "6 years" is their case, not the unit asked for: the answer is days.
    expect(questionIntent('I have been here 6 years, how much annual leave do I get?').units).toEqual(questionIntent('How much annual leave do I get?').units);
    expect(proposeCandidates('I have been here 6 years, how much annual leave do I get?', passages)[0]!.text).toBe('26 days');
  });

  it('answers with the table row whose range holds the case the asker states, in hours too', () => {
    const flights = [
      'Scheduled flight time: Under 6 hours; Class: Economy',
      'Scheduled flight time: 6 to 9 hours; Class: Premium economy',
      'Scheduled flight time: More than 9 hours; Class: Business class',
    ];
    expect(statedRanges(flights[1]!).map(({ min, max }) => [min * 24, max * 24])).toEqual([[6, 10]]);
    // "from 9 to 17" names no unit: a time of day, not a range.
    expect(statedRanges('open from 9 to 17')).toEqual([]);
    const passages = [{ title: 'Travel > Flights', text: ['| Scheduled flight time | Class |', '|---|---|', '| Under 6 hours | Economy |', '| 6 to 9 hours | Premium economy |', '| More than 9 hours | Business class |'].join('\n') }];
    const pick = (q: string) => proposeCandidates(q, passages).find((c) => c.kind === 'unit')!.text;
    expect(pick('Our flight to Shanghai is almost 12 hours. Can I sit up front?')).toBe(flights[2]);
    expect(pick('My flight is 7 hours, can I sit up front?')).toBe(flights[1]);
    expect(pick('My flight is 2 hours, can I sit up front?')).toBe(flights[0]);
  });
});

describe('tiers and stated cases', () => {
  it('parses Arabic and Chinese numerals, the quantities a question states and the ranges a rule states', () => {
    expect([parseNumber('12'), parseNumber('十二'), parseNumber('二十'), parseNumber('两'), parseNumber('一百零五'), parseNumber('x')]).toEqual([12, 12, 20, 2, 105, NaN]);
    expect(statedQuantities('我工作已经12年了，每年有几天年假？')).toEqual([12 * 365]);
    // A period ("一个月最多…", "每年") and the unit asked for ("多少小时") are not the asker's case.
    expect(statedQuantities('一个月最多能加多少小时班？')).toEqual([]);
    expect(statedQuantities('5月1日上班有加班费吗？')).toEqual([]);
    expect(statedQuantities('I have worked here for 6 years; how many days do I get?')).toEqual([6 * 365]);
    expect(statedRanges('已满10年不满20年的').map(({ min, max }) => [min, max])).toEqual([[3650, 7300]]);
    expect(statedRanges('怀孕未满4个月流产的').map(({ min, max }) => [min, max])).toEqual([[0, 120]]);
    // Tables often space their numbers: "满 10 年不满 20 年", "满 20 年及以上".
    expect(statedRanges('累计工作年限: 满 10 年不满 20 年; 合计: 16 天').map(({ min, max }) => [min / 365, max / 365])).toEqual([[10, 20]]);
    expect(statedRanges('累计工作年限: 满 20 年及以上; 合计: 20 天').map(({ min, max }) => [min / 365, max])).toEqual([[20, Infinity]]);
    expect(statedRanges('Years of service: 5–9; Annual leave: 26 days').map(({ min, max }) => [min, max])).toEqual([[5 * 365, 10 * 365]]);
    expect(statedRanges('at least 3 years of service').map(({ min, max }) => [min, max])).toEqual([[3 * 365, Infinity]]);
    expect(statedRanges('Fixed-term contracts of 6 months or shorter have no probation').map(({ min, max }) => [min / 30, max / 30])).toEqual([[0, 7]]);
    expect(statedRanges('Fixed-term contracts longer than 6 months: probation of 1 month').map(({ min, max }) => [min / 30, max])).toEqual([[6, Infinity]]);
    // A contract's length that conditions the rule is not the probation the rule sets.
    const probation = [{ title: 'Onboarding > Probation period', text: '- Permanent contracts: probation of **2 months**.\n- Fixed-term contracts longer than 6 months: probation of **1 month**.\n- Fixed-term contracts of 6 months or shorter have no probation period.' }];
    expect(proposeCandidates('How long is the probation period?', probation)[0]!.text).not.toBe('6 months');
    expect(proposeCandidates('I have a permanent contract. How long is my probation?', probation)[0]!.text).toBe('2 months');
    expect(tierFit('已满1年不满10年的，年休假5天；已满10年不满20年的，年休假10天', 14, [12 * 365])).toBe(-1);
    expect(tierFit('已满1年不满10年的，年休假5天；已满10年不满20年的，年休假10天', 33, [12 * 365])).toBe(1);
    expect(tierFit('年休假5天', 3, [12 * 365])).toBe(0);
    const accrual = 'Fewer than 3 years: 4 hours per pay period; Between 3 and 15 years: 6 hours per pay period; 15+ years: 8 hours per pay period';
    expect(statedRanges(accrual).map(({ min, max }) => [min / 365, max / 365])).toEqual([[0, 3], [3, 16], [15, Infinity]]);
    expect(tierFit(accrual, accrual.indexOf('6 hours'), [5 * 365])).toBe(1);
    // A value that is the bound of a tier excluding the case is wrong, not a weaker answer.
    expect(tierFit('those with less than 1 year of service', 'those with less than '.length, [5 * 365])).toBe(-1);
  });
});

describe('the candidate answerer', () => {
  const kb = new LocalKnowledgeBase(':memory:');
  beforeAll(async () => {
    await kb.addPaths([tempFolder({ 'leave.md': LEAVE, 'it.md': IT, 'zh/leave.md': ZH })]);
  });

  it('answers with the direct answer first, then the supporting sentence quoted with its citation, then done with direct', async () => {
    const result = await collect(new CandidateAnswerer({ kb }).answer(ask('I have worked here 3 years. How many days of annual leave do I get?')));
    expect(result.order).toEqual(['sources', 'token', 'done']);
    expect(result.direct).toBe('25 days');
    expect(result.text).toBe('25 days\n\n> Years of service: 0–4 years; Annual leave: 25 days [1]');
    expect(result.sources[0]!.source).toBe('leave.md');
    expect(result.text).not.toMatch(/\*\*|\|/);
  });

  it('answers with the cases of a rule when the question names none, and with the named one when it does', async () => {
    // "How many days?" from someone who did not say how long they have worked: every tier, not a guess.
    const all = await collect(new CandidateAnswerer({ kb }).answer(ask('How many days of annual leave do I get?')));
    expect(all.direct).toBe('0–4 years: 25 days; 5–9 years: 26 days');
    expect(all.text).toBe('0–4 years: 25 days; 5–9 years: 26 days\n\n> Years of service: 0–4 years; Annual leave: 25 days [1]');
    const contract = '| 合同类型 | 合同期限 | 试用期 |\n|---|---|---|\n| 首次签订的劳动合同 | 3 年 | 3 个月 |\n| 管理岗位（M2 及以上） | 3 年 | 6 个月 |\n| 实习协议 | 3 至 6 个月 | 无试用期 |';
    const trial = new LocalKnowledgeBase(':memory:');
    await trial.addPaths([tempFolder({ 'probation.md': `# 入职\n\n## 试用期\n\n${contract}\n` })]);
    expect((await collect(new CandidateAnswerer({ kb: trial }).answer(ask('试用期多长？')))).direct).toBe('首次签订的劳动合同：3 个月；管理岗位（M2 及以上）：6 个月；实习协议：无试用期');
    // Naming the case (the row's label, or another of its cells) answers with that case's cell, in the column asked about.
    expect((await collect(new CandidateAnswerer({ kb: trial }).answer(ask('管理岗试用期多长？')))).direct).toBe('6 个月');
    // A table with a total column lists the totals (法定 + 福利 = 合计).
    const leave = '| 累计工作年限 | 法定年假 | 福利年假 | 合计 |\n|---|---|---|---|\n| 满 1 年不满 10 年 | 5 天 | 7 天 | 12 天 |\n| 满 10 年不满 20 年 | 10 天 | 6 天 | 16 天 |';
    const zhLeave = new LocalKnowledgeBase(':memory:');
    await zhLeave.addPaths([tempFolder({ 'leave.md': `# 年假\n\n## 年假天数\n\n${leave}\n` })]);
    expect((await collect(new CandidateAnswerer({ kb: zhLeave }).answer(ask('年假有几天？')))).direct).toBe('满 1 年不满 10 年：12 天；满 10 年不满 20 年：16 天');
    zhLeave.close();
    // A cell that lists cases itself: the cases when no city is named, the city's value when one is.
    const cities = '| 项目 | 标准 |\n|---|---|\n| 出差补贴 | 北京、深圳：¥180/天；其他城市：¥120/天 |\n| 住宿（每晚上限） | 北京、深圳：¥800；广州、杭州、苏州：¥600；其他城市：¥500 |';
    const travel = new LocalKnowledgeBase(':memory:');
    await travel.addPaths([tempFolder({ 'travel.md': `# 报销\n\n## 国内出差标准\n\n${cities}\n` })]);
    expect((await collect(new CandidateAnswerer({ kb: travel }).answer(ask('住宿每晚上限是多少钱？')))).direct).toBe('北京、深圳：¥800；广州、杭州、苏州：¥600；其他城市：¥500');
    expect((await collect(new CandidateAnswerer({ kb: travel }).answer(ask('去北京出差，住宿每晚上限多少钱？')))).direct).toBe('¥800');
    // …and cases written after their values.
    const perDiem = [{ title: 'Travel > Per diem', text: 'You receive a daily meal allowance (per diem) of €60 in Europe, US$80 in North America and CNY 300 in China.' }];
    const chosen = (question: string) => {
      const [best] = proposeCandidates(question, perDiem);
      return answerByCase(question, best!, perDiem[0]!.text, false) ?? best!.text;
    };
    expect(chosen('How much is the per diem?')).toBe('Europe: €60; North America: US$80; China: CNY 300');
    expect(chosen('How much is the per diem in China?')).toBe('CNY 300');
    trial.close();
    travel.close();
  });

  it('refuses when the passage is about another kind of leave or fee than the one the question names', async () => {
    expect(namedKinds('老婆生孩子，男方能休几天陪产假？')).toEqual(['陪产假']);
    expect(namedKinds('夏天的高温费每个月发多少？')).toEqual(['高温费']);
    // Asking for leave (请假, 休假), leave not taken (没休的假) and 免费 name no kind; 请病假 names 病假.
    expect(namedKinds('我想请假，没休的假能折现吗？体检免费吗？')).toEqual([]);
    expect(namedKinds('请病假的时候工资怎么算？')).toEqual(['病假']);
    // 年假 is the 年休假 a rule writes: characters in order, up to two between.
    expect(kindsMissing('今年的年假能攒到明年吗？', '年休假一般不跨年度安排')).toEqual([]);
    expect(kindsMissing('男方能休几天陪产假？', '女职工生育享受98天产假')).toEqual(['陪产假']);
    // English names the kind before bonus, allowance, insurance, fee: a Christmas bonus is not the referral bonus.
    expect(namedKinds('Do we get a Christmas bonus? And my annual bonus?')).toEqual(['christmas']);
    expect(kindsMissing('Do we get a Christmas bonus?', 'Employee referral bonus: €3,000 per hire')).toEqual(['christmas']);
    // 年终奖 is the 奖金 a handbook writes (workplace-words.ts), not another kind.
    expect(kindsMissing('公司有年终奖吗？', 'L5 及以上职级的员工另有年度公司奖金，在 3 月发放。')).toEqual([]);
    expect(kindsMissing('Can I get my visa fees reimbursed?', 'Visa costs and fees are reimbursed')).toEqual([]);
    // Leave is named in the asker's words too often ("baby leave") to refuse on it.
    expect(namedKinds('After my baby leave ends, how long must I stay?')).toEqual([]);
    const maternity = new LocalKnowledgeBase(':memory:');
    await maternity.addPaths([tempFolder({ 'leave.md': '# 假期\n\n## 产假\n\n女职工生育享受98天产假，其中产前可以休假15天。\n' })]);
    const answerer = new CandidateAnswerer({ kb: maternity });
    expect((await collect(answerer.answer(ask('生孩子能休几天产假？')))).direct).toBe('98天');
    const paternity = await collect(answerer.answer(ask('老婆生孩子，男方能休几天陪产假？')));
    expect(paternity.direct).toBe('');
    expect(paternity.text).not.toContain('98');
    maternity.close();
  });

  it('refuses a question asking for a value when the best sentence holds none of that kind', async () => {
    const kb = new LocalKnowledgeBase(':memory:');
    await kb.addPaths([tempFolder({ 'travel.md': '# Travel\n\n## Emergencies abroad\n\nIf you have an accident abroad, fill in the incident form in PeopleDock when you are back.\n\n## Transit\n\nTo receive a transit subsidy, enroll through the benefits portal.\n\n## Quotes\n\nQuotes needed: 3 written quotes.\n' })]);
    const answerer = new CandidateAnswerer({ kb });
    // A phone number and an amount are asked; the sentences about the topic hold none.
    expect((await collect(answerer.answer(ask('I had an accident abroad. Who do I phone?')))).direct).toBe('');
    expect((await collect(answerer.answer(ask("What's the monthly dollar cap on the transit subsidy?")))).direct).toBe('');
    // A count is any number, unit known or not.
    expect((await collect(answerer.answer(ask('How many quotes are needed?')))).direct).toMatch(/3 written quotes/);
    // A yes/no question is answered by the rule that decides it.
    expect((await collect(answerer.answer(ask('Can I get a transit subsidy?')))).direct).toMatch(/transit subsidy/i);
    kb.close();
  });

  it('refuses a question whether something exists when the passage never names that thing', async () => {
    expect(askedThing('Is there a prayer room in the Rotterdam office?')).toBe('prayer room');
    expect(askedThing('Can I bring my dog to the office?')).toBe('dog');
    expect(askedThing('Can I take my dog to work in Rotterdam?')).toBe('dog');
    expect(askedThing('Can I take a day off on Friday?')).toBeUndefined();
    expect(askedThing('Does the company offer a gym membership?')).toBe('gym membership');
    expect(askedThing('上海办公室有母婴室吗？')).toBe('母婴室');
    expect(askedThing('公司提供员工宿舍吗？怎么申请？')).toBe('宿舍');
    // Asking whether there is a limit or a period asks about the rule, and "do I have to" is no existence.
    expect(askedThing('Is there a limit on how much time off I can get?')).toBeUndefined();
    expect(askedThing('How long do I have to file the expense claim?')).toBeUndefined();
    expect(askedThing('How much extra do we get paid for on-call?')).toBeUndefined();
    // "When is the …", "Who is our …": the event or role by its last word ("of" stays in the name).
    expect(askedThing('When is the Christmas party this year?')).toBe('party');
    expect(askedThing('Who is our head of marketing?')).toBe('marketing');
    expect(askedThing('When is the Harbor 101 intro session held?')).toBe('session');
    expect(askedThing('When is my weekly time entry due?')).toBeUndefined();
    expect(thingMissing('When is the Christmas party this year?', 'Public holidays: Christmas Day (25 December) and Boxing Day.')).toBe('party');
    expect(thingMissing('When is the Harbor 101 intro session held?', 'Harbor 101 is held every second Monday; join the first session after your start.')).toBeUndefined();
    expect(thingMissing('Is there a prayer room in the Rotterdam office?', 'Rotterdam rooms are named after Dutch lighthouses.')).toBe('prayer room');
    expect(thingMissing('Is there a quiet room in Rotterdam?', 'The quiet rooms on floor 2 are for focused work.')).toBeUndefined();
    // 宿舍 meets 员工宿舍; the handbook's own word for an asker's word counts (健身 → gym is not needed here).
    expect(thingMissing('公司提供宿舍吗？', '新员工可申请员工宿舍三个月。')).toBeUndefined();
    expect(thingMissing('上海办公室有母婴室吗？', '上海办公室于 2017 年 9 月成立，目前有 168 名员工。')).toBe('母婴室');
    const office = new LocalKnowledgeBase(':memory:');
    await office.addPaths([tempFolder({ 'office.md': '# Rotterdam office\n\n## Rooms\n\nRotterdam rooms are named after Dutch lighthouses. Book a room in Beacon for up to 3 hours.\n' })]);
    const answerer = new CandidateAnswerer({ kb: office });
    const prayer = await collect(answerer.answer(ask('Is there a prayer room in the Rotterdam office?')));
    expect(prayer.direct).toBe('');
    expect(prayer.text).not.toContain('lighthouses');
    expect((await collect(answerer.answer(ask('How long can I book a room in the Rotterdam office?')))).direct).toBe('3 hours');
    office.close();
  });

  it('answers Chinese questions from the Chinese passage, numbers and units intact', async () => {
    const result = await collect(new CandidateAnswerer({ kb }).answer(ask('报销要在多少天内提交？')));
    expect(result.direct).toBe('30 天');
    expect(answerLength(result.direct!)).toBeLessThanOrEqual(30);
    expect(result.text).toContain('> 报销须在费用发生后 30 天内提交，逾期不予报销。 [1]');
  });

  it('says it does not know, with an empty direct answer and no sources, when nothing matches', async () => {
    const result = await collect(new CandidateAnswerer({ kb }).answer(ask('Is there a gym subsidy for the Rotterdam office?')));
    expect(result.direct).toBe('');
    expect(result.sources).toEqual([]);
    expect(result.text).toMatch(/couldn't find that/);
    expect(result.text).not.toMatch(/closest sections/);
    const zh = await collect(new CandidateAnswerer({ kb }).answer(ask('公司有健身房补贴吗？')));
    expect(zh.direct).toBe('');
    expect(zh.text).toMatch(/没有找到/);
  });

  it('names the closest sections it retrieved when its gate refuses, quoting none of them', async () => {
    // A gate no sentence can pass: the passages were found, but nothing is stated from them.
    const strict = new CandidateAnswerer({ kb, minSupport: 2 });
    const result = await collect(strict.answer(ask('How many days of annual leave do I get?')));
    expect(result.direct).toBe('');
    expect(result.sources).toEqual([]);
    expect(result.text).toMatch(/^Sorry, I couldn't find that in the knowledge base\. The closest sections I found: "Leave › Annual leave"/);
    expect(result.text).not.toMatch(/25 days|\[\d\]|> /);
    const zh = await collect(strict.answer(ask('报销要在多少天内提交？')));
    expect(zh.text).toMatch(/^抱歉，我在知识库里没有找到相关内容。最接近的章节：《年假 › 年假天数》/);
    expect(zh.text).not.toMatch(/30 天/);
  });

  it('lets the model decide among the candidates through the selector, and records its prompt', async () => {
    const question = 'How many days can I carry over into the next year?';
    // A model that prefers "26 days": with a selector that weighs the model heavily, its choice wins.
    const scorer: CandidateScorer = {
      model: { name: 'fake', version: 'v9', kind: 'language-model' },
      selector: { ...DEFAULT_SELECTOR, weights: { ...DEFAULT_SELECTOR.weights, model: 1 } },
      score: async ({ answers }) => answers.map((a) => (a === '26 days' ? -0.5 : -3)),
      prompt: ({ question: q }) => `PROMPT ${q}`,
    };
    const result = await collect(new CandidateAnswerer({ kb, scorer }).answer(ask(question)));
    expect(result.direct).toBe('26 days');
    expect(result.prompt).toBe(`PROMPT ${question}`);
    // With the default selector the model's small weight does not overturn a clear rule preference.
    const quiet = await collect(new CandidateAnswerer({ kb, scorer: { ...scorer, selector: DEFAULT_SELECTOR } }).answer(ask(question)));
    expect(quiet.direct).toBe('5 days');
  });

  it('composes one line when the direct answer is the whole supporting sentence', () => {
    expect(composeAnswer({ direct: 'Report it in Beacon within 1 hour', support: 'Report it in Beacon within 1 hour:', citation: 2 })).toBe('Report it in Beacon within 1 hour [2]');
  });
});

describe('the answer selector', () => {
  const f = (over: Partial<CandidateFeatures>): CandidateFeatures => ({ ...(Object.fromEntries(CANDIDATE_FEATURES.map((n) => [n, 0])) as CandidateFeatures), ...over });

  it('learns from labelled candidate sets to prefer what was right, and scores linearly', () => {
    // The rule prior prefers the wrong candidate; the right one is always the value that the model likes.
    const groups: SelectorGroup[] = Array.from({ length: 40 }, (_, i) => ({
      features: [f({ prior: 0.6 + (i % 3) * 0.01, unit: 1 }), f({ prior: 0.5, value: 1, model: 0 }), f({ prior: 0.55, clause: 1, model: -2 })],
      right: [false, true, false],
    }));
    expect(selectorAccuracy(DEFAULT_SELECTOR, groups)).toBe(0);
    const trained = trainSelector(groups);
    expect(selectorAccuracy(trained, groups)).toBe(1);
    expect(selectorScore(trained, f({ value: 1 }))).toBeGreaterThan(selectorScore(trained, f({ unit: 1 })));
  });

  it('learns from rejected answers (👎) to rank that kind of candidate lower, and keeps what was liked', () => {
    // The rules choose the whole sentence; people reject it whenever a value was there to give.
    const rejected: SelectorGroup[] = Array.from({ length: 30 }, () => ({
      features: [f({ prior: 0.7, unit: 1 }), f({ prior: 0.6, value: 1 })],
      right: [false, false],
      rejected: 0,
    }));
    // ... and liked a value when the rules gave one.
    const liked: SelectorGroup[] = Array.from({ length: 10 }, () => ({ features: [f({ prior: 0.7, value: 1 }), f({ prior: 0.6, unit: 1 })], right: [true, false] }));
    expect(selectorAccuracy(DEFAULT_SELECTOR, rejected)).toBe(0);
    const trained = trainSelector([...rejected, ...liked]);
    expect(selectorAccuracy(trained, rejected)).toBe(1);
    expect(selectorAccuracy(trained, liked)).toBe(1);
  });

  it('has the gradient of its loss (finite differences), for right and rejected groups', () => {
    const groups: SelectorGroup[] = [
      { features: [f({ prior: 0.7, unit: 1, model: -0.3 }), f({ prior: 0.4, value: 1, lexical: 0.5 }), f({ prior: 0.2, clause: 1, cosine: 0.9 })], right: [false, true, true] },
      { features: [f({ prior: 0.9, near: 0.2, long: 1 }), f({ prior: 0.5, fit: 1, passage: 0.3 })], right: [false, false], rejected: 0, weight: 2 },
      { features: [f({ prior: 0.3, model: -1 }), f({ prior: 0.35, unit: 1, cosine: 0.2 })], right: [false, true] },
    ];
    const w = CANDIDATE_FEATURES.map((_, j) => 0.3 * Math.sin(j + 1));
    const { grad } = selectorLossAndGradient(w, groups);
    const h = 1e-6;
    CANDIDATE_FEATURES.forEach((_, j) => {
      const plus = [...w];
      const minus = [...w];
      plus[j]! += h;
      minus[j]! -= h;
      const numeric = (selectorLossAndGradient(plus, groups).loss - selectorLossAndGradient(minus, groups).loss) / (2 * h);
      expect(grad[j]).toBeCloseTo(numeric, 6);
    });
    expect(grad.some((g) => Math.abs(g) > 1e-3)).toBe(true);
  });

  it('labels a candidate right when it holds the known answer or is most of a long one', () => {
    expect(isRightCandidate('25 days', '25 days')).toBe(true);
    expect(isRightCandidate('Years of service: 0–4 years; Annual leave: 25 days', '25 days')).toBe(true);
    expect(isRightCandidate('26 days', '25 days')).toBe(false);
    expect(isRightCandidate('Report a lost or stolen laptop in Beacon within 1 hour', 'Report a lost or stolen laptop in Beacon within 1 hour of noticing.')).toBe(true);
  });
});

describe('answer evaluation', () => {
  it('counts the gold fact, exact direct answers, lengths and refusals of both kinds', async () => {
    const kb = new LocalKnowledgeBase(':memory:');
    await kb.addPaths([tempFolder({ 'leave.md': LEAVE, 'it.md': IT })]);
    const scores = await evaluateAnswers({
      answerer: new CandidateAnswerer({ kb }),
      questions: [
        { question: 'I have worked here 3 years. How many days of annual leave do I get?', answer: '25 days', source: 'leave.md' },
        { question: 'Until when can I use carried-over days?', answer: 'From the reference', must_contain: ['1 July'], source: 'leave.md' },
        { question: 'Is there a gym subsidy for the office?', answer: 'UNANSWERABLE' },
      ],
    });
    expect(scores).toMatchObject({ answerable: 2, unanswerable: 1, containsGold: 1, directExact: 1, answerableRefused: 0, unanswerableRefused: 1, goldDocRetrieved: 1 });
    expect(scores.items[1]).toMatchObject({ direct: '1 July', containsGold: true });
    expect(answerLength('年假 5 天')).toBe(2.5);
  });
});
