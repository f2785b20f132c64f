export { runConsoleChat, type ConsoleChatOptions } from './console-chat.ts';
