export { createWecomAdapter, type WecomAdapterOptions } from './wecom-adapter.ts';
export { WecomApiClient, WecomApiError, DEFAULT_WECOM_API_BASE } from './api-client.ts';
export { splitUtf8, utf8Length, WECOM_TEXT_LIMIT_BYTES } from './utf8-split.ts';
export { WECOM_MEMBER_LIMITS, type SendClock, type SendLimit } from './member-send-queue.ts';
