/** A bounded, insertion-ordered map: the oldest entries go first when it is full. */
export class BoundedMap<K, V> {
  private readonly entries = new Map<K, V>();

  constructor(private readonly capacity: number) {}

  get(key: K): V | undefined {
    return this.entries.get(key);
  }

  set(key: K, value: V): void {
    this.entries.delete(key);
    this.entries.set(key, value);
    while (this.entries.size > this.capacity) {
      const oldest = this.entries.keys().next().value as K;
      this.entries.delete(oldest);
    }
  }

  /** Records `key`; true when it was already there (a redelivery). */
  seen(key: K, value: V): boolean {
    if (this.entries.has(key)) return true;
    this.set(key, value);
    return false;
  }
}
