/**
 * Passage metadata as Chroma accepts it — flat, scalar values only (no nested objects, arrays or
 * null) — and the one filter rule every retriever applies: equality on each key given.
 */
export type Scalar = string | number | boolean;
/** Metadata as Chroma stores it: flat, scalar values only. */
export type FlatMetadata = Record<string, Scalar>;
/** Equality on every key given (Chroma, the in-memory store and BM25 apply the same rule). */
export type MetadataFilter = FlatMetadata;

/** Drops what Chroma would reject (nested objects, arrays, null) instead of failing the whole batch. */
export function flatMetadata(metadata: Record<string, unknown>): FlatMetadata {
  const out: FlatMetadata = {};
  for (const [key, value] of Object.entries(metadata)) {
    if (typeof value === 'string' || typeof value === 'boolean' || (typeof value === 'number' && Number.isFinite(value))) out[key] = value;
  }
  return out;
}

export function matchesFilter(metadata: Record<string, unknown>, filter: MetadataFilter | undefined): boolean {
  if (!filter) return true;
  return Object.entries(filter).every(([key, value]) => metadata[key] === value);
}
