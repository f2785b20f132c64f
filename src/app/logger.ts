import { pino } from 'pino';
import type { Logger } from '../core/index.ts';

/** Field names that may hold a credential anywhere in a log line. */
const SECRET_FIELDS = [
  'token', 'secret', 'password', 'authorization', 'signingSecret', 'botToken', 'appToken', 'appSecret',
  'encryptKey', 'verificationToken', 'encodingAesKey', 'adminToken', 'access_token', 'corpsecret',
];

export const REDACT_PATHS = [
  ...SECRET_FIELDS,
  ...SECRET_FIELDS.map((f) => `*.${f}`),
  'req.headers.authorization',
  'req.headers.cookie',
  'headers.authorization',
  'headers["x-slack-signature"]',
];

/** Structured JSON logs on stderr (stdout stays clean for `--json` output), with secrets redacted. */
export function createLogger(level: string, destination: pino.DestinationStream = pino.destination(2)): Logger {
  return pino({ level, redact: { paths: REDACT_PATHS, censor: '[redacted]' }, base: { app: 'teamllm' } }, destination) as unknown as Logger;
}
