// A value that screens watch: the whole of the dashboard's shared state is
// a handful of these. Small enough to write here rather than add a state
// library to the bundle.
import { useEffect, useReducer } from "preact/hooks";

export class Store<T> {
  private listeners = new Set<() => void>();
  constructor(private current: T) {}

  get value(): T {
    return this.current;
  }

  set(value: T): void {
    this.current = value;
    for (const listener of [...this.listeners]) listener();
  }

  update(change: (value: T) => T): void {
    this.set(change(this.current));
  }

  subscribe(listener: () => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }
}

/** The store's value, re-rendering the component when it changes. */
export function useStore<T>(store: Store<T>): T {
  const [, rerender] = useReducer((n: number, _: void) => n + 1, 0);
  useEffect(() => store.subscribe(() => rerender()), [store]);
  return store.value;
}
