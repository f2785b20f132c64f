import { GPT } from '../../src/model/gpt.ts';
import { CharTokenizer } from '../../src/model/tokenizer/index.ts';
import type { GPTConfig } from '../../src/model/config.ts';

export const HANDBOOK_EN = `# Leave and holidays

All leave is requested in **PeopleDock**.

## Annual leave

| Years of service | Annual leave |
|---|---|
| 0–4 years | 25 days |
| 5–9 years | 26 days |

- You may carry over **at most 5 days** into the next year. Carried-over days expire on **1 July** of that year.
- Managers respond to a leave request within 3 working days.
- **PeopleDock**: the HR system where leave is requested and approved.

## Sick leave

Report sick to your manager before 09:30 on the first day. The company pays 90% of your salary.
`;

export const HANDBOOK_ZH = `# 年假

## 年假天数

| 累计工作年限 | 合计 |
|---|---|
| 满 1 年不满 10 年 | 12 天 |

- 应届毕业生入职当年享有 **6 天**福利年假。
- 当年年假可以延长使用至次年 **3 月 31 日**。
`;

/** Every character the tests' texts use, so the char tokenizer knows them. */
export const ALPHABET = `${HANDBOOK_EN}${HANDBOOK_ZH}abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 .,;:!?'"()[]{}<>|-–—*_#%€¥$/\n？，。：“”几哪是什么多少钱一天关于有规定`;

/** A character tokenizer with the chat special tokens; `extra`: more text it must be able to encode. */
export function charTokenizer(extra = ''): CharTokenizer {
  return CharTokenizer.fromText(ALPHABET + extra, { specialTokens: true });
}

export function tinyChatModel(vocabSize: number, overrides: Partial<GPTConfig> = {}, seed = 5): GPT {
  return GPT.create({ vocabSize, blockSize: 128, nLayer: 2, nHead: 2, nEmbd: 32, dropout: 0, bias: false, ...overrides }, seed);
}
