export { webRoutes, WEB_ADMIN_ID, type WebAdapterOptions } from './web-routes.ts';
export { WebReplyChannel } from './reply-channel.ts';
export { adminRoutes, type AdminData, type AdminModelVersion } from './admin-routes.ts';
