import { XMLParser, XMLValidator } from 'fast-xml-parser';
import { z } from 'zod';

export class MalformedXml extends Error {}

// Values stay strings: ids such as MsgId are 64-bit and would lose digits as numbers.
const outerParser = new XMLParser({ parseTagValue: false, processEntities: false, ignoreDeclaration: true });
const innerParser = new XMLParser({ parseTagValue: false, ignoreDeclaration: true });

const Envelope = z.object({
  Encrypt: z.string().min(1),
  ToUserName: z.string().optional(),
  AgentID: z.string().optional(),
});

/** The decrypted callback, message or event (fields from WeCom's "receiving messages" docs). */
const Inbound = z.object({
  ToUserName: z.string(),
  FromUserName: z.string().min(1),
  CreateTime: z.string().regex(/^\d+$/),
  MsgType: z.string().min(1),
  AgentID: z.string().optional(),
  MsgId: z.string().optional(),
  Content: z.string().optional(),
  Event: z.string().optional(),
  EventKey: z.string().optional(),
  TaskId: z.string().optional(),
  CardType: z.string().optional(),
  ResponseCode: z.string().optional(),
});

export type WecomInbound = z.infer<typeof Inbound>;

/**
 * The unauthenticated outer envelope `<xml><ToUserName/><Encrypt/><AgentID/></xml>`. Entities are
 * not expanded here: nothing legitimate needs them before the signature is checked.
 */
export function parseEnvelope(xml: string): z.infer<typeof Envelope> {
  return parseRoot(xml, outerParser, Envelope);
}

export function parseInbound(xml: string): WecomInbound {
  return parseRoot(xml, innerParser, Inbound);
}

function parseRoot<T extends z.ZodType>(xml: string, parser: XMLParser, schema: T): z.infer<T> {
  if (XMLValidator.validate(xml) !== true) throw new MalformedXml('not well-formed XML');
  let doc: unknown;
  try {
    doc = parser.parse(xml);
  } catch (err) {
    throw new MalformedXml(err instanceof Error ? err.message : 'unparseable XML');
  }
  const root = (doc as { xml?: unknown } | undefined)?.xml;
  const parsed = schema.safeParse(root);
  if (!parsed.success) {
    throw new MalformedXml(parsed.error.issues.map((i) => `${i.path.join('.') || 'xml'}: ${i.message}`).join('; '));
  }
  return parsed.data;
}
