import { createCipheriv, createDecipheriv, createHash, randomBytes } from 'node:crypto';

/**
 * WeCom's callback crypto as its docs describe it, written here with node:crypto on purpose so the
 * tests never trust the adapter's own (library) code: AESKey = base64(EncodingAESKey + "="),
 * IV = AESKey[0:16], AES-256-CBC over random(16) + uint32 big-endian length + msg + receiveid,
 * PKCS#7-padded to a multiple of 32 bytes.
 */
export function wecomEncrypt(encodingAesKey: string, message: string, receiveId: string, random = randomBytes(16)): string {
  const key = Buffer.from(`${encodingAesKey}=`, 'base64');
  const msg = Buffer.from(message, 'utf8');
  const length = Buffer.alloc(4);
  length.writeUInt32BE(msg.length, 0);
  const plain = Buffer.concat([random, length, msg, Buffer.from(receiveId, 'utf8')]);
  const pad = 32 - (plain.length % 32);
  const cipher = createCipheriv('aes-256-cbc', key, key.subarray(0, 16));
  cipher.setAutoPadding(false);
  return Buffer.concat([cipher.update(Buffer.concat([plain, Buffer.alloc(pad, pad)])), cipher.final()]).toString('base64');
}

export function wecomDecrypt(encodingAesKey: string, ciphertext: string): { message: string; receiveId: string } {
  const key = Buffer.from(`${encodingAesKey}=`, 'base64');
  const decipher = createDecipheriv('aes-256-cbc', key, key.subarray(0, 16));
  decipher.setAutoPadding(false);
  const padded = Buffer.concat([decipher.update(ciphertext, 'base64'), decipher.final()]);
  const plain = padded.subarray(0, padded.length - padded[padded.length - 1]!);
  const length = plain.readUInt32BE(16);
  return { message: plain.subarray(20, 20 + length).toString('utf8'), receiveId: plain.subarray(20 + length).toString('utf8') };
}

/** msg_signature = sha1 of the four values sorted as strings and concatenated. */
export function wecomSignature(token: string, timestamp: string, nonce: string, encrypted: string): string {
  return createHash('sha1').update([token, timestamp, nonce, encrypted].sort().join('')).digest('hex');
}

const cdata = (value: string) => `<![CDATA[${value}]]>`;

export function textMessageXml(o: { corpId: string; from: string; content: string; msgId: string; agentId: string; createTime?: number }): string {
  return (
    `<xml><ToUserName>${cdata(o.corpId)}</ToUserName><FromUserName>${cdata(o.from)}</FromUserName>` +
    `<CreateTime>${o.createTime ?? Math.floor(Date.now() / 1000)}</CreateTime><MsgType>${cdata('text')}</MsgType>` +
    `<Content>${cdata(o.content)}</Content><MsgId>${o.msgId}</MsgId><AgentID>${o.agentId}</AgentID></xml>`
  );
}

export function imageMessageXml(o: { corpId: string; from: string; msgId: string; agentId: string }): string {
  return (
    `<xml><ToUserName>${cdata(o.corpId)}</ToUserName><FromUserName>${cdata(o.from)}</FromUserName>` +
    `<CreateTime>${Math.floor(Date.now() / 1000)}</CreateTime><MsgType>${cdata('image')}</MsgType>` +
    `<PicUrl>${cdata('http://127.0.0.1/p.png')}</PicUrl><MediaId>${cdata('media-1')}</MediaId>` +
    `<MsgId>${o.msgId}</MsgId><AgentID>${o.agentId}</AgentID></xml>`
  );
}

export function cardEventXml(o: {
  corpId: string;
  from: string;
  eventKey: string;
  taskId: string;
  responseCode: string;
  agentId: string;
  createTime: number;
}): string {
  return (
    `<xml><ToUserName>${cdata(o.corpId)}</ToUserName><FromUserName>${cdata(o.from)}</FromUserName>` +
    `<CreateTime>${o.createTime}</CreateTime><MsgType>${cdata('event')}</MsgType>` +
    `<Event>${cdata('template_card_event')}</Event><EventKey>${cdata(o.eventKey)}</EventKey>` +
    `<TaskId>${cdata(o.taskId)}</TaskId><CardType>${cdata('button_interaction')}</CardType>` +
    `<ResponseCode>${cdata(o.responseCode)}</ResponseCode><AgentID>${o.agentId}</AgentID></xml>`
  );
}

/** The outer XML WeCom POSTs, with the query string that signs it. */
export function encryptedCallback(
  secrets: { token: string; encodingAesKey: string; corpId: string; agentId: string },
  innerXml: string,
  overrides: { receiveId?: string; encodingAesKey?: string; signature?: string; nonce?: string; timestamp?: number } = {},
): { query: string; body: string; encrypted: string } {
  const encrypted = wecomEncrypt(overrides.encodingAesKey ?? secrets.encodingAesKey, innerXml, overrides.receiveId ?? secrets.corpId);
  const timestamp = String(overrides.timestamp ?? Math.floor(Date.now() / 1000));
  const nonce = overrides.nonce ?? randomBytes(6).toString('hex');
  const signature = overrides.signature ?? wecomSignature(secrets.token, timestamp, nonce, encrypted);
  const query = new URLSearchParams({ msg_signature: signature, timestamp, nonce }).toString();
  const body =
    `<xml><ToUserName>${cdata(secrets.corpId)}</ToUserName><AgentID>${cdata(secrets.agentId)}</AgentID>` +
    `<Encrypt>${cdata(encrypted)}</Encrypt></xml>`;
  return { query, body, encrypted };
}
