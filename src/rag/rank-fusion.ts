/**
 * Reciprocal rank fusion (Cormack, Clarke & Büttcher 2009): each list gives an item
 * weight / (k + rank), ranks from 1. It needs no score calibration between BM25 (unbounded) and
 * cosine similarity ([-1, 1]), which is why it is the usual way to merge lexical and dense results.
 */
export interface RankedList<T> {
  items: T[];
  weight?: number;
}

export interface FusedItem<T> {
  item: T;
  score: number;
  /** Rank (from 0) in each list, undefined where the list does not have the item. */
  ranks: (number | undefined)[];
}

export function reciprocalRankFusion<T>(lists: RankedList<T>[], key: (item: T) => string, k = 60): FusedItem<T>[] {
  const fused = new Map<string, FusedItem<T>>();
  lists.forEach((list, l) => {
    list.items.forEach((item, rank) => {
      const id = key(item);
      let entry = fused.get(id);
      if (!entry) fused.set(id, (entry = { item, score: 0, ranks: lists.map(() => undefined) }));
      // An item listed twice in one list counts once, at its best rank.
      if (entry.ranks[l] !== undefined) return;
      entry.ranks[l] = rank;
      entry.score += (list.weight ?? 1) / (k + rank + 1);
    });
  });
  return [...fused.values()].sort((a, b) => b.score - a.score);
}
