// The REST side of the server, as the dashboard uses it: the key goes in
// the `apikey` header of every call (never in a URL), and every error comes
// back as an ApiError carrying the server's code and message.

/** An error answer of the server (or no answer at all: status 0). */
export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
  ) {
    super(message);
  }
}

let currentKey = "";

/** The key every call presents. It lives in this module and in the tab's
 * sessionStorage (see session.ts), nowhere else. */
export function useKey(key: string): void {
  currentKey = key;
}

export async function api<T>(method: string, path: string, body?: unknown): Promise<T> {
  const headers: Record<string, string> = { accept: "application/json" };
  if (currentKey) headers.apikey = currentKey;
  if (body !== undefined) headers["content-type"] = "application/json";
  let response: Response;
  try {
    response = await fetch(path, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      cache: "no-store",
      credentials: "omit",
    });
  } catch {
    throw new ApiError(0, "NETWORK", "The server did not answer. Is it running, and is this the right address?");
  }
  const text = await response.text();
  let json: unknown = null;
  try {
    json = text ? JSON.parse(text) : null;
  } catch {
    json = null;
  }
  if (!response.ok) {
    const error = (json as { error?: { code?: string; message?: string } } | null)?.error;
    throw new ApiError(
      response.status,
      error?.code ?? `HTTP_${response.status}`,
      error?.message ?? `${response.status} ${response.statusText}`,
    );
  }
  return json as T;
}

export const get = <T>(path: string) => api<T>("GET", path);
export const post = <T>(path: string, body?: unknown) => api<T>("POST", path, body ?? {});
export const del = <T>(path: string) => api<T>("DELETE", path);

/** One committed event, as the log and the streams carry it. */
export interface Envelope {
  id: number;
  seq: number;
  event: string;
  instance: string;
  timestamp: string;
  data: Record<string, unknown>;
}

export interface EventPage {
  events: Envelope[];
  next: number;
  more: boolean;
}

export interface Driver {
  kind: "simulator" | "serial" | "tcp";
  [setting: string]: unknown;
}

export interface InstanceView {
  instanceName: string;
  instanceId: string;
  driver: Driver;
  status: "connecting" | "open" | "close";
  createdAt: string;
  /** The node driving it, once the server runs as a cluster (issue 11). */
  owner?: string;
  node?: string;
}

/** `connection` event data. */
export interface ConnectionData {
  state: string;
  status: string;
  reason?: string;
  info?: {
    me?: { id: string; name: string };
    operator?: string;
    signal?: number;
    registration?: string;
  };
}

export interface TokenAnswer {
  token: string;
  expiresAt: string;
  expiresIn: number;
  instances: string[] | "*";
  events: string[];
}

export const path = (strings: TemplateStringsArray, ...names: string[]) =>
  strings.reduce((out, s, i) => out + s + (i < names.length ? encodeURIComponent(names[i]) : ""), "");

async function firstIdAfter(id: number): Promise<number | null> {
  const page = await get<EventPage>(`/events?since=${id}&limit=1`);
  return page.events.length ? page.events[0].id : null;
}

/** The newest id in the log the caller may read. The API reads forward
 * only, so this searches: doubling steps from `hint` (a recently seen id,
 * usually the answer itself: one request), then halving. */
export async function findHead(hint = 0): Promise<number> {
  let lo = await firstIdAfter(hint);
  if (lo === null) return hint;
  let step = 1;
  let hi: number;
  for (;;) {
    const after = await firstIdAfter(lo + step);
    if (after === null) {
      hi = lo + step;
      break;
    }
    lo = after;
    step *= 2;
  }
  while (lo < hi) {
    const mid = Math.floor((lo + hi) / 2);
    const after = await firstIdAfter(mid);
    if (after === null) hi = mid;
    else lo = after;
  }
  return lo;
}

/** Most pages of `connection` events read to find each instance's latest. */
const CONNECTION_PAGE_BUDGET = 20;

/** The latest `connection` event of each named instance, read backwards
 * from `head` in growing windows (500 ids, then 5,000, 50,000...) so that a
 * busy log costs a few pages, not the whole history. An instance with no
 * connection event within the page budget is left out; the live stream
 * fills it in at its modem's next status poll. */
export async function latestConnections(names: string[], head: number): Promise<Map<string, Envelope>> {
  const found = new Map<string, Envelope>();
  let end = head;
  let size = 500;
  let pages = 0;
  while (end > 0 && pages < CONNECTION_PAGE_BUDGET) {
    const missing = names.filter((n) => !found.has(n));
    if (!missing.length) break;
    const start = Math.max(0, end - size);
    // A long list would make a long URL; the caller's scope applies anyway.
    const only = missing.length <= 40 ? `&instance=${missing.map(encodeURIComponent).join(",")}` : "";
    const window = new Map<string, Envelope>();
    let since = start;
    while (pages < CONNECTION_PAGE_BUDGET) {
      pages += 1;
      const page = await get<EventPage>(`/events?since=${since}&limit=1000&events=connection${only}`);
      for (const event of page.events) {
        if (event.id <= end && missing.includes(event.instance)) window.set(event.instance, event);
      }
      if (!page.more || page.next >= end) break;
      since = page.next;
    }
    for (const [name, event] of window) found.set(name, event);
    end = start;
    size *= 10;
  }
  return found;
}
