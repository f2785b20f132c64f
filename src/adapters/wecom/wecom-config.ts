import { DEFAULT_WECOM_API_BASE } from './api-client.ts';

export interface WecomConfig {
  corpId: string;
  agentId: string;
  secret: string;
  token: string;
  encodingAesKey: string;
  apiBase: string;
}

const REQUIRED = ['WECOM_CORP_ID', 'WECOM_AGENT_ID', 'WECOM_SECRET', 'WECOM_TOKEN', 'WECOM_ENCODING_AES_KEY'] as const;

/** The WECOM_* keys. The app config validates them already; this guards direct use (tests, embedding). */
export function readWecomConfig(env: Record<string, string | undefined>): WecomConfig {
  const missing = REQUIRED.filter((key) => !env[key]);
  if (missing.length > 0) throw new Error(`The WeCom adapter needs ${missing.join(', ')}`);
  const encodingAesKey = env.WECOM_ENCODING_AES_KEY!;
  if (!/^[A-Za-z0-9]{43}$/.test(encodingAesKey)) throw new Error('WECOM_ENCODING_AES_KEY must be the 43-character EncodingAESKey');
  const agentId = env.WECOM_AGENT_ID!;
  if (!/^\d+$/.test(agentId)) throw new Error('WECOM_AGENT_ID must be a number');
  return {
    corpId: env.WECOM_CORP_ID!,
    agentId,
    secret: env.WECOM_SECRET!,
    token: env.WECOM_TOKEN!,
    encodingAesKey,
    apiBase: env.WECOM_API_BASE || DEFAULT_WECOM_API_BASE,
  };
}
