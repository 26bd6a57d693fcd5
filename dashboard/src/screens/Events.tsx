// The live event stream, filtered by instance and kind. Pausing closes the
// stream and keeps the last id; resuming (like any reconnect) opens it
// again with `since=<last id>`, so what came meanwhile arrives in order,
// once.
import { useEffect, useRef, useState } from "preact/hooks";
import { findHead, type Envelope } from "../api";
import { Notice, ScreenTitle, timeOf } from "../components/ui";
import { go, href } from "../router";
import { session } from "../session";
import { instances, newestSeen } from "../state";
import { useStore } from "../store";
import { EventStream, type StreamStatus } from "../stream";

const KINDS = ["message", "delivery", "connection", "presence", "group", "call", "status", "location", "ussd"];
/** Most events kept on screen; older ones drop off the bottom. */
const SHOWN = 500;
/** How far back the screen starts: the last this many ids of the log. */
const BACKFILL = 200;

export function summary(event: Envelope): string {
  const d = event.data as Record<string, any>;
  switch (event.event) {
    case "message":
      return `${d.direction === "incoming" ? "from" : "to"} ${d.direction === "incoming" ? d.from : d.to}: “${String(d.content ?? "").slice(0, 160)}”${d.parts > 1 ? ` (${d.parts} parts)` : ""}`;
    case "delivery":
      return `${d.status} to ${d.to}${d.partsDone !== undefined ? ` (${d.partsDone}/${d.parts} parts)` : ""}${d.error ? ` — ${d.error}` : ""}`;
    case "connection": {
      const i = d.info ?? {};
      const figures = [i.operator, i.signal !== undefined ? `${i.signal} dBm` : undefined, i.registration].filter(Boolean).join(", ");
      return `${d.state}${figures ? ` — ${figures}` : ""}${d.reason ? ` (${d.reason})` : ""}`;
    }
    case "call":
      return `${d.status} ${d.from ?? ""}`;
    case "instance":
      return `${d.action} ${d.instance?.instanceName ?? ""}`;
    case "location":
      return `${d.latitude}, ${d.longitude}`;
    case "ussd":
      return `${d.request ? `${d.request} → ` : ""}${d.status}${d.text ? `: “${String(d.text).slice(0, 160)}”` : ""}`;
    case "presence":
      return `${d.id ?? ""} ${d.presence ?? ""}`;
    case "group":
      return `${d.action} ${d.metadata?.name ?? d.id ?? ""}`;
    default:
      return JSON.stringify(d).slice(0, 160);
  }
}

const STATUS_TEXT: Record<StreamStatus | "paused", string> = {
  connecting: "connecting…",
  live: "live",
  reconnecting: "reconnecting…",
  stopped: "stopped",
  failed: "refused",
  paused: "paused",
};

export function Events(props: { instance?: string }) {
  const who = useStore(session);
  const names = [...useStore(instances).keys()].sort();
  const kinds = who?.role === "admin" ? [...KINDS, "instance"] : KINDS;
  const [chosen, setChosen] = useState<Set<string>>(new Set(kinds));
  const [paused, setPaused] = useState(false);
  const [events, setEvents] = useState<Envelope[]>([]);
  const [status, setStatus] = useState<{ status: StreamStatus | "paused"; detail?: string }>({ status: "connecting" });
  const lastId = useRef<number | null>(null);
  const shownFilter = useRef("");
  const instance = props.instance ?? "";
  const selected = kinds.filter((k) => chosen.has(k));
  const filter = `${instance}|${selected.join(",")}`;

  useEffect(() => {
    if (paused) {
      setStatus({ status: "paused" });
      return;
    }
    if (!selected.length) return;
    let stream: EventStream | null = null;
    let cancelled = false;
    // Events come in bursts (a replay sends hundreds at once): they are
    // shown once per frame, not once each.
    let pending: Envelope[] = [];
    let frame = 0;
    const flush = () => {
      frame = 0;
      const batch = pending.reverse();
      pending = [];
      setEvents((shown) => [...batch, ...shown].slice(0, SHOWN));
    };
    void (async () => {
      let since = lastId.current;
      if (since === null || shownFilter.current !== filter) {
        // A new filter starts over, from a little before now.
        shownFilter.current = filter;
        setEvents([]);
        try {
          since = Math.max(0, (await findHead(newestSeen)) - BACKFILL);
        } catch {
          since = null;
        }
      }
      if (cancelled) return;
      stream = new EventStream({
        since,
        instances: instance ? [instance] : undefined,
        events: selected.length === kinds.length ? undefined : selected,
        onEvent: (event) => {
          lastId.current = event.id;
          pending.push(event);
          if (!frame) frame = requestAnimationFrame(flush);
        },
        onStatus: (s, detail) => setStatus({ status: s, detail }),
      });
      stream.start();
    })();
    return () => {
      cancelled = true;
      stream?.stop();
      if (frame) {
        cancelAnimationFrame(frame);
        flush();
      }
    };
  }, [filter, paused]);

  const toggle = (kind: string) => {
    const next = new Set(chosen);
    if (next.has(kind)) next.delete(kind);
    else next.add(kind);
    setChosen(next);
  };

  return (
    <main id="main">
      <div class="screen-head">
        <ScreenTitle>Events</ScreenTitle>
        <p class="stream-status" role="status" data-status={status.status}>
          <span class={`dot dot-${status.status}`} aria-hidden="true" />
          Stream {STATUS_TEXT[status.status]}
          {status.detail && status.status !== "live" ? `: ${status.detail}` : ""}
          {lastId.current !== null && <span class="muted"> · last id {lastId.current}</span>}
        </p>
      </div>
      <form class="filters card" onSubmit={(e) => e.preventDefault()} aria-label="Filters">
        <div class="field">
          <label for="events-instance">Instance</label>
          <select id="events-instance" value={instance} onChange={(e) => (e.currentTarget.value ? go("events", e.currentTarget.value) : go("events"))}>
            <option value="">all instances</option>
            {names.map((n) => (
              <option value={n}>{n}</option>
            ))}
          </select>
        </div>
        <fieldset>
          <legend>Kinds</legend>
          <div class="choices">
            {kinds.map((k) => (
              <label class="choice">
                <input type="checkbox" name="kind" value={k} checked={chosen.has(k)} onChange={() => toggle(k)} /> {k}
              </label>
            ))}
          </div>
        </fieldset>
        <div class="actions">
          <button type="button" class={paused ? "primary" : ""} onClick={() => setPaused(!paused)} aria-pressed={paused}>
            {paused ? "Resume" : "Pause"}
          </button>
          <button type="button" onClick={() => setEvents([])}>
            Clear
          </button>
        </div>
      </form>
      {!selected.length && <Notice kind="info">Choose at least one kind of event.</Notice>}
      {status.status === "failed" && <Notice kind="error">The server refused the stream: {status.detail}</Notice>}
      {paused && <Notice kind="info">Paused. Resume to get everything that came meanwhile, in order.</Notice>}
      <div class="table-wrap">
        <table class="cards events" aria-label="Events, newest first">
          <thead>
            <tr>
              <th scope="col">Id</th>
              <th scope="col">Time</th>
              <th scope="col">Instance</th>
              <th scope="col">Kind</th>
              <th scope="col">What</th>
            </tr>
          </thead>
          <tbody>
            {events.map((e) => {
              const messageId = (e.event === "message" || e.event === "delivery") && typeof e.data.id === "string" ? e.data.id : null;
              return (
                <tr key={e.id} data-id={e.id} data-kind={e.event} data-instance={e.instance}>
                  <td data-label="Id" class="num">
                    {e.id}
                  </td>
                  <td data-label="Time">{timeOf(e.timestamp)}</td>
                  <td data-label="Instance">
                    <a href={href("instance", e.instance)}>{e.instance}</a>
                  </td>
                  <td data-label="Kind">
                    <span class={`kind kind-${e.event}`}>{e.event}</span>
                  </td>
                  <td data-label="What" class="wrap">
                    {summary(e)}
                    {messageId && (
                      <>
                        {" "}
                        <a class="small" href={href("message", e.instance, messageId)}>
                          history
                        </a>
                      </>
                    )}
                  </td>
                </tr>
              );
            })}
          </tbody>
        </table>
      </div>
      {events.length === 0 && selected.length > 0 && <p class="empty">No events yet. They appear here as they are committed.</p>}
    </main>
  );
}
