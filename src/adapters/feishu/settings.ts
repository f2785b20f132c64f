import { Domain } from '@larksuiteoapi/node-sdk';

export type FeishuMode = 'webhook' | 'ws';

export interface FeishuSettings {
  appId: string;
  appSecret: string;
  verificationToken?: string;
  encryptKey?: string;
  /** What the SDK takes: its Domain enum for the public clouds, else a base URL. */
  domain: Domain | string;
  mode: FeishuMode;
}

/** The SDK's long connection silently refuses app ids of any other shape, so we say it out loud. */
const WS_APP_ID = /^cli_[0-9a-fA-F]{16}$/;

export class FeishuConfigError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'FeishuConfigError';
  }
}

/** Reads the FEISHU_* keys (already validated for shape by the app config) into settings. */
export function readFeishuSettings(env: Record<string, string | undefined>): FeishuSettings {
  const value = (key: string) => {
    const v = env[key]?.trim();
    return v ? v : undefined;
  };
  const appId = value('FEISHU_APP_ID');
  const appSecret = value('FEISHU_APP_SECRET');
  const missing = [!appId && 'FEISHU_APP_ID', !appSecret && 'FEISHU_APP_SECRET'].filter(Boolean);
  if (!appId || !appSecret) throw new FeishuConfigError(`the Feishu adapter needs ${missing.join(' and ')}`);

  const mode = (value('FEISHU_MODE') ?? 'webhook') as string;
  if (mode !== 'webhook' && mode !== 'ws') throw new FeishuConfigError(`FEISHU_MODE must be webhook or ws, got "${mode}"`);

  const verificationToken = value('FEISHU_VERIFICATION_TOKEN');
  const encryptKey = value('FEISHU_ENCRYPT_KEY');
  if (mode === 'webhook' && !verificationToken && !encryptKey) {
    // Without either, anyone who finds the URL could post questions and votes as any user.
    throw new FeishuConfigError(
      'webhook mode needs FEISHU_VERIFICATION_TOKEN or FEISHU_ENCRYPT_KEY (both recommended) to check that callbacks come from Feishu; or use FEISHU_MODE=ws',
    );
  }
  if (mode === 'ws' && !WS_APP_ID.test(appId)) {
    throw new FeishuConfigError(`FEISHU_MODE=ws needs an app id like cli_ followed by 16 hex digits, got "${appId}"`);
  }

  return {
    appId,
    appSecret,
    ...(verificationToken ? { verificationToken } : {}),
    ...(encryptKey ? { encryptKey } : {}),
    domain: resolveDomain(value('FEISHU_DOMAIN') ?? 'feishu'),
    mode,
  };
}

export function resolveDomain(domain: string): Domain | string {
  if (domain === 'feishu') return Domain.Feishu;
  if (domain === 'lark') return Domain.Lark;
  if (!/^https?:\/\/\S+$/.test(domain)) throw new FeishuConfigError(`FEISHU_DOMAIN must be feishu, lark or a base URL, got "${domain}"`);
  // The SDK appends "/open-apis/..." itself.
  return domain.replace(/\/+$/, '');
}
