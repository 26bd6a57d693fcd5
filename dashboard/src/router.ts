// Hash routes (#/instances, #/events...): the server serves one page, and
// nothing secret ever goes into the address bar.
import { useEffect, useState } from "preact/hooks";

export function currentRoute(): string[] {
  return location.hash
    .replace(/^#\/?/, "")
    .split("/")
    .filter(Boolean)
    .map(decodeURIComponent);
}

export function useRoute(): string[] {
  const [route, setRoute] = useState(currentRoute);
  useEffect(() => {
    const changed = () => setRoute(currentRoute());
    addEventListener("hashchange", changed);
    return () => removeEventListener("hashchange", changed);
  }, []);
  return route;
}

export const href = (...parts: string[]) => "#/" + parts.map(encodeURIComponent).join("/");

export function go(...parts: string[]): void {
  location.hash = href(...parts);
}
