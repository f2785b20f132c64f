/**
 * The words employees ask in, and the words handbooks write for the same thing: "vacation days" for
 * the annual leave a policy grants, "my boss" for the manager who approves, "我的工资" for 薪资,
 * "在家办公" for 远程办公. A question in its asker's words shares no term with the rule that answers
 * it, and no amount of ranking brings back a term that is not there.
 *
 * Why a short hand-written list and not a dictionary: WordNet's and CC-CEDICT's synonyms were
 * measured as query expansion and were noise ("do" → perform, "can" → dismiss; docs/knowledge-base.md);
 * the everyday vocabulary of work — leave, pay, sickness, travel, equipment, leaving a job — is small,
 * the same in every company's handbook, and not in a corpus of 20 documents to be learned from.
 * Each entry maps one asker's word (as search-terms.ts writes it: a Porter stem, or a Chinese word
 * or bigram) to the handbook words it stands for. Only questions are expanded, at less weight than
 * what the asker typed (bm25.ts, answer-candidates.ts); documents are indexed as written.
 */
import { searchTerms } from './search-terms.ts';

/** How much a handbook word found for an asker's word counts, against 1 for a word the asker typed. */
export const EXPANSION_WEIGHT = 0.5;

/** Asker's words → handbook words, written as people write them (stemmed below). */
const EN: [string[], string[]][] = [
  [['vacation', 'vacations', 'pto', 'holiday', 'holidays'], ['leave', 'annual']],
  [['time off', 'days off', 'day off'], ['leave']],
  [['ill', 'unwell', 'illness', 'flu'], ['sick']],
  [['sick'], ['illness']],
  [['boss', 'supervisor'], ['manager']],
  [['paycheck', 'paycheque', 'wage', 'wages', 'payday'], ['salary', 'paid']],
  [['raise'], ['salary', 'increase']],
  [['computer', 'macbook', 'pc'], ['laptop']],
  [['wfh', 'remotely', 'remote'], ['home', 'remote']],
  [['quit', 'quitting', 'resign', 'resigning'], ['resignation', 'notice']],
  [['fired', 'sacked', 'laid off', 'layoff'], ['dismissal', 'termination']],
  [['trip', 'trips'], ['travel']],
  [['doctor', 'gp'], ['medical', 'physician']],
  [['therapist', 'therapy', 'psychologist', 'counsellor', 'counselor'], ['counselling', 'psychologist', 'mental']],
  [['retirement', '401k'], ['pension']],
  [['baby', 'newborn'], ['birth', 'parental']],
  [['wedding', 'married', 'marry'], ['marriage', 'wedding']],
  [['funeral', 'died', 'death', 'passed away'], ['bereavement']],
  [['grandma', 'grandpa', 'grandmother', 'grandfather', 'granny', 'nan'], ['grandparent']],
  [['mum', 'mom', 'dad', 'mother', 'father'], ['parent']],
  [['refund', 'reimburse', 'reimbursed', 'expense', 'expenses'], ['reimbursed', 'expense', 'claim']],
  [['cell', 'mobile'], ['phone']],
  [['bike', 'bicycle', 'cycle', 'cycling'], ['bicycle', 'bike']],
  [['gym', 'fitness'], ['sport', 'gym']],
  [['lunch', 'dinner', 'food', 'eat'], ['meal', 'lunch', 'canteen']],
  [['hotel'], ['accommodation', 'hotel']],
  [['fly', 'flying'], ['flight']],
  [['dentist'], ['dental']],
  [['tech support', 'helpdesk', 'help desk', 'service desk', 'tech people', 'techies'], ['itdept', 'desk']],
  [['outage', 'went down', 'broke production'], ['incident']],
  [['write-up', 'write up', 'went wrong', 'retro', 'retrospective'], ['postmortem', 'review']],
  [['commute', 'commuting', 'trips in', 'travel to work', 'get to work', 'come in'], ['commuting']],
  [['borrow', 'borrowing'], ['advance', 'advanced']],
  [['sign off', 'signs off', 'green light', 'ok it', 'okay it'], ['approval', 'approve']],
  [['glasses', 'spectacles', 'contacts', 'contact lenses'], ['glasses', 'eyewear', 'optical']],
];

const ZH: [string[], string[]][] = [
  [['工资', '薪水', '薪资', '薪酬', '发薪'], ['薪资', '工资', '薪酬']],
  [['生病', '不舒服', '病了'], ['病假']],
  [['辞职', '离职', '走人'], ['离职', '辞职', '解除']],
  [['老板', '领导'], ['上级', '主管', '经理']],
  [['电脑'], ['笔记本', '电脑']],
  [['在家'], ['远程', '居家']],
  [['吃饭', '开饭', '饭'], ['用餐', '餐', '食堂']],
  [['社保'], ['社会保险']],
  [['年终奖'], ['奖金']],
  [['生孩子', '生娃', '宝宝', '孩子出生'], ['生育', '产假']],
  [['结婚', '领证'], ['婚假']],
  [['看病'], ['就医', '医疗']],
  [['近视镜', '配镜', '隐形眼镜'], ['眼镜']],
  [['迟到', '早退'], ['考勤']],
  // The holidays by name are the statutory ones (法定节假日 / 法定休假日 in handbooks and the law).
  [['国庆', '春节', '过年', '元旦', '清明', '端午', '中秋', '劳动节', '五一', '十一'], ['法定节假日', '法定休假日']],
  [['小产', '没保住'], ['流产']],
];

interface Entry {
  asked: RegExp;
  written: string[];
}

function compile(groups: [string[], string[]][]): Entry[] {
  return groups.flatMap(([asked, written]) => {
    const terms = [...new Set(written.flatMap((w) => searchTerms(w, { stem: true })))];
    // English words whole (a plural too), Chinese words anywhere in the question.
    return asked.map((a) => ({ asked: /[a-z]/.test(a) ? new RegExp(`\\b${a}(?:s|es)?\\b`, 'u') : new RegExp(a, 'u'), written: terms }));
  });
}

let compiled: Entry[] | undefined;

/**
 * The handbook words (search terms) the question's everyday words stand for, none already among
 * the question's own terms.
 */
export function workplaceExpansions(question: string, queryTerms: readonly string[]): string[] {
  compiled ??= compile([...EN, ...ZH]);
  const q = question.normalize('NFKC').toLowerCase();
  const own = new Set(queryTerms);
  const out = new Set<string>();
  for (const { asked, written } of compiled) if (asked.test(q)) for (const t of written) if (!own.has(t)) out.add(t);
  return [...out];
}
