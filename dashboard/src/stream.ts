// A WebSocket to /ws that never misses an event: it opens with a scoped
// token (never the key), remembers the last id it delivered, and after any
// drop reconnects with `since=<last id>`, so the server replays what came
// meanwhile. Ids are checked too: nothing is delivered twice.
import type { Envelope } from "./api";
import { dropToken, streamToken } from "./session";

export type StreamStatus = "connecting" | "live" | "reconnecting" | "stopped" | "failed";

export interface StreamOptions {
  instances?: string[];
  events?: string[];
  /** Replay from after this id; absent: only what comes from now on. */
  since?: number | null;
  onEvent: (event: Envelope) => void;
  onStatus?: (status: StreamStatus, detail?: string) => void;
}

/** Close codes after which reconnecting cannot help (see the README). */
const POLICY = 1008;
const TOKEN_EXPIRED = 4010;
const CURSOR_EXPIRED = 4011;

const MAX_BACKOFF_MS = 15_000;

export class EventStream {
  /** The id of the last event delivered: where a reconnect resumes. */
  lastId: number | null;
  private socket: WebSocket | null = null;
  private stopped = true;
  private attempt = 0;
  private retry: ReturnType<typeof setTimeout> | undefined;
  private refresh: ReturnType<typeof setTimeout> | undefined;
  private serverError = "";

  constructor(private readonly options: StreamOptions) {
    this.lastId = options.since ?? null;
  }

  start(): void {
    if (!this.stopped) return;
    this.stopped = false;
    this.attempt = 0;
    void this.open();
  }

  stop(): void {
    this.stopped = true;
    clearTimeout(this.retry);
    clearTimeout(this.refresh);
    const socket = this.socket;
    this.socket = null;
    socket?.close(1000, "bye");
    this.status("stopped");
  }

  private status(status: StreamStatus, detail?: string): void {
    this.options.onStatus?.(status, detail);
  }

  private async open(): Promise<void> {
    this.status(this.attempt === 0 && this.lastId === null ? "connecting" : "reconnecting");
    let token: { value: string; expiresAt: number };
    try {
      token = await streamToken();
    } catch (err) {
      if (this.stopped) return;
      this.later(`cannot get a stream token: ${(err as Error).message}`);
      return;
    }
    if (this.stopped) return;
    const query = new URLSearchParams({ token: token.value });
    if (this.options.instances?.length) query.set("instances", this.options.instances.join(","));
    if (this.options.events?.length) query.set("events", this.options.events.join(","));
    if (this.lastId !== null) query.set("since", String(this.lastId));
    const scheme = location.protocol === "https:" ? "wss" : "ws";
    const socket = new WebSocket(`${scheme}://${location.host}/ws?${query}`);
    this.socket = socket;
    this.serverError = "";
    socket.onopen = () => {
      this.attempt = 0;
      this.status("live");
      this.scheduleRefresh(token.expiresAt);
    };
    socket.onmessage = (frame) => {
      let message: Record<string, unknown>;
      try {
        message = JSON.parse(String(frame.data));
      } catch {
        return;
      }
      if (typeof message.event === "string" && typeof message.id === "number") {
        if (this.lastId !== null && message.id <= this.lastId) return;
        this.lastId = message.id;
        this.options.onEvent(message as unknown as Envelope);
      } else if (message.type === "error") {
        const data = message.data as { message?: string } | undefined;
        this.serverError = data?.message ?? "the server refused the stream";
      }
    };
    socket.onclose = (close) => {
      if (this.socket !== socket || this.stopped) return;
      this.socket = null;
      clearTimeout(this.refresh);
      if (close.code === TOKEN_EXPIRED) {
        dropToken();
        this.later("the token expired", 0);
      } else if (close.code === CURSOR_EXPIRED) {
        // Retention removed events after our id: start from what is kept
        // now and say so, rather than pretend nothing is missing.
        this.lastId = null;
        this.later("some events were removed by retention before they could be shown", 0);
      } else if (close.code === POLICY) {
        this.stopped = true;
        this.status("failed", this.serverError || close.reason || "the server refused the stream");
      } else {
        this.later(this.serverError || close.reason || "the connection dropped");
      }
    };
  }

  /** Reconnects after a pause that doubles with each failure. */
  private later(why: string, delay?: number): void {
    const wait = delay ?? Math.min(MAX_BACKOFF_MS, 500 * 2 ** this.attempt) * (0.8 + Math.random() * 0.4);
    this.attempt += 1;
    this.status("reconnecting", why);
    clearTimeout(this.retry);
    this.retry = setTimeout(() => void this.open(), wait);
  }

  /** Swaps a fresh token into the open socket a minute before this one ends. */
  private scheduleRefresh(expiresAt: number): void {
    clearTimeout(this.refresh);
    const wait = Math.max(5_000, expiresAt - Date.now() - 60_000);
    this.refresh = setTimeout(async () => {
      try {
        const token = await streamToken();
        this.socket?.send(JSON.stringify({ action: "refresh", token: token.value }));
        this.scheduleRefresh(token.expiresAt);
      } catch {
        // The socket closes with TOKEN_EXPIRED and reconnects with a new one.
      }
    }, wait);
  }
}
