export { webRoutes, WEB_ADMIN_ID, type WebAdapterOptions } from './web-routes.ts';
export { WebReplyChannel } from './reply-channel.ts';
