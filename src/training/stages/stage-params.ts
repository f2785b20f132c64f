import { z } from 'zod';

/**
 * Chat and CLI give training parameters as `key=value` strings; stages declare what they accept
 * with a zod object of coercing fields, and get a clear message for anything else.
 */
export function parseStageParams<T extends z.ZodRawShape>(kind: string, params: Record<string, string>, shape: T): z.infer<z.ZodObject<T>> {
  return parseStageParamsWith(kind, params, z.object(shape).strict());
}

/** The same check with a stage's own strict schema (the SFT and RLHF jobs export theirs). */
export function parseStageParamsWith<S extends z.ZodObject>(kind: string, params: Record<string, string>, schema: S): z.infer<S> {
  const result = schema.safeParse(params);
  if (!result.success) {
    const known = Object.keys(schema.shape).join(', ');
    const problems = result.error.issues.map((i) =>
      i.code === 'unrecognized_keys' ? `unknown parameter${i.keys.length > 1 ? 's' : ''} ${i.keys.join(', ')} (known: ${known})` : `${i.path.join('.')}: ${i.message}`,
    );
    throw new Error(`${kind}: ${problems.join('; ')}`);
  }
  return result.data;
}

// Field helpers every stage's schema uses, so a parameter reads and fails the same in each stage.
/** true/false, also as the strings true|false|yes|no|1|0 (chat and --set give strings). */
export const bool = () => z.union([z.boolean(), z.enum(['true', 'false', 'yes', 'no', '1', '0'])]).transform((v) => v === true || v === 'true' || v === 'yes' || v === '1');
export const num = () => z.coerce.number().refine(Number.isFinite, 'must be a number');
export const int = () => z.coerce.number().int('must be a whole number').nonnegative();
/** A list, also as one comma-separated string. */
export const list = () => z.union([z.string(), z.array(z.string())]).transform((v) => (Array.isArray(v) ? v : v.split(',').map((s) => s.trim()).filter(Boolean)));
