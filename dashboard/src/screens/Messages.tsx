// Message history: an instance's texts, newest first, with filters, and one
// sent text with each part's reference and status. Read from
// `GET /message/find/{instance}` and `GET /message/{instance}/{id}`, and
// cancellable while no part went out (`DELETE /message/{instance}/{id}`;
// once a driver took it the server answers 409, shown as it says).
import { useEffect, useState } from "preact/hooks";
import { ApiError, del, get, path } from "../api";
import { Confirm, Field, Notice, ScreenTitle, timeOf } from "../components/ui";
import { go, href } from "../router";
import { deliveries, instances } from "../state";
import { useStore } from "../store";

interface HistoryItem {
  id: string;
  direction: "incoming" | "outgoing";
  number: string;
  from: string;
  to: string;
  text: string;
  parts: number;
  status: string;
  timestamp: string;
  eventId: number;
  priority?: number;
  sendAt?: string;
  validUntil?: string;
  error?: string;
}

interface HistoryAnswer {
  messages: HistoryItem[];
  nextCursor: number | null;
}

interface PartView {
  part: number;
  total: number;
  reference: number;
  status: string;
  sentAt: string;
}

interface MessageView {
  id: string;
  instance: string;
  number: string;
  text: string;
  status: string;
  error?: string;
  priority: number;
  createdAt: string;
  sendAt?: string;
  validUntil?: string;
  /** Why a queued message still waits (scheduled, or a throttle). */
  waiting?: string | null;
  parts: PartView[];
}

const STATUSES = ["received", "queued", "sent", "delivered", "failed", "expired", "cancelled"];
const PAGE = 50;

function dateTime(value: string | undefined): string {
  if (!value) return "–";
  const date = new Date(value);
  return Number.isNaN(date.getTime()) ? value : date.toLocaleString();
}

/** An instance's messages, newest first. */
export function Messages(props: { instance?: string }) {
  const names = [...useStore(instances).keys()].sort();
  const instance = props.instance && names.includes(props.instance) ? props.instance : names[0];
  const [direction, setDirection] = useState("");
  const [status, setStatus] = useState("");
  const [number, setNumber] = useState("");
  const [applied, setApplied] = useState("");
  const [items, setItems] = useState<HistoryItem[] | null>(null);
  const [next, setNext] = useState<number | null>(null);
  const [error, setError] = useState("");
  const [busy, setBusy] = useState(false);

  const query = (cursor: number | null) => {
    const params = new URLSearchParams({ limit: String(PAGE) });
    if (direction) params.set("direction", direction);
    if (status) params.set("status", status);
    if (number.trim()) params.set("number", number.trim());
    if (cursor !== null) params.set("cursor", String(cursor));
    return `${path`/message/find/${instance ?? ""}`}?${params}`;
  };

  const load = async (cursor: number | null) => {
    if (!instance) return;
    setBusy(true);
    setError("");
    try {
      const answer = await get<HistoryAnswer>(query(cursor));
      setItems((before) => (cursor === null ? answer.messages : [...(before ?? []), ...answer.messages]));
      setNext(answer.nextCursor);
    } catch (err) {
      setError((err as Error).message);
    } finally {
      setBusy(false);
    }
  };

  useEffect(() => {
    setItems(null);
    void load(null);
  }, [instance, applied]);

  return (
    <main id="main">
      <ScreenTitle>Messages</ScreenTitle>
      {!instance ? (
        <p class="empty">No instance to show messages of.</p>
      ) : (
        <>
          <p class="muted">
            What <a href={href("instance", instance)}>{instance}</a> sent and received, newest first. Open a sent text
            to see its parts.
          </p>
          <form
            class="filters"
            aria-label="Filter messages"
            onSubmit={(e) => {
              e.preventDefault();
              setApplied(`${direction}|${status}|${number}|${Date.now()}`);
            }}
          >
            {names.length > 1 && (
              <Field id="history-instance" label="Instance">
                {(attrs) => (
                  <select {...attrs} value={instance} onChange={(e) => go("messages", (e.target as HTMLSelectElement).value)}>
                    {names.map((n) => (
                      <option value={n}>{n}</option>
                    ))}
                  </select>
                )}
              </Field>
            )}
            <Field id="history-direction" label="Direction">
              {(attrs) => (
                <select {...attrs} value={direction} onChange={(e) => setDirection((e.target as HTMLSelectElement).value)}>
                  <option value="">both</option>
                  <option value="incoming">incoming</option>
                  <option value="outgoing">outgoing</option>
                </select>
              )}
            </Field>
            <Field id="history-status" label="Status">
              {(attrs) => (
                <select {...attrs} value={status} onChange={(e) => setStatus((e.target as HTMLSelectElement).value)}>
                  <option value="">any</option>
                  {STATUSES.map((s) => (
                    <option value={s}>{s}</option>
                  ))}
                </select>
              )}
            </Field>
            <Field id="history-number" label="Number">
              {(attrs) => (
                <input {...attrs} type="tel" value={number} placeholder="+15551234567" onInput={(e) => setNumber((e.target as HTMLInputElement).value)} />
              )}
            </Field>
            <div class="actions">
              <button type="submit" class="primary" disabled={busy}>
                Show
              </button>
            </div>
          </form>
          {error && <Notice kind="error">Could not load the messages: {error}</Notice>}
          {items === null && !error && <p class="muted">Loading…</p>}
          {items && items.length === 0 && next === null && <p class="empty">No messages match.</p>}
          {items && items.length > 0 && (
            <div class="table-wrap">
              <table class="cards" aria-label="Messages">
                <thead>
                  <tr>
                    <th scope="col">When</th>
                    <th scope="col">Direction</th>
                    <th scope="col">Number</th>
                    <th scope="col">Text</th>
                    <th scope="col">Status</th>
                  </tr>
                </thead>
                <tbody>
                  {items.map((m) => (
                    <tr data-message={m.id} data-status={m.status}>
                      <td data-label="When">{dateTime(m.timestamp)}</td>
                      <td data-label="Direction">{m.direction === "incoming" ? "↓ in" : "↑ out"}</td>
                      <td data-label="Number">{m.number}</td>
                      <td data-label="Text" class="wrap">
                        {m.direction === "outgoing" ? (
                          <a href={href("message", instance, m.id)}>{m.text.slice(0, 120) || "(empty)"}</a>
                        ) : (
                          m.text.slice(0, 120)
                        )}
                        {m.parts > 1 && <span class="muted small"> ({m.parts} parts)</span>}
                      </td>
                      <td data-label="Status">
                        <span class={`badge badge-${m.status}`}>{m.status}</span>
                        {m.error && <div class="bad small">{m.error}</div>}
                      </td>
                    </tr>
                  ))}
                </tbody>
              </table>
            </div>
          )}
          {next !== null && (
            <p>
              <button type="button" disabled={busy} onClick={() => load(next)}>
                Older messages
              </button>
            </p>
          )}
        </>
      )}
    </main>
  );
}

/** One sent text: its schedule, each part with its reference and status,
 * and the delivery events this tab has seen for it. */
export function Message(props: { instance: string; id: string }) {
  const { instance, id } = props;
  const [message, setMessage] = useState<MessageView | null>(null);
  const [error, setError] = useState("");
  const [asking, setAsking] = useState(false);
  const [done, setDone] = useState("");
  const steps = useStore(deliveries).get(id) ?? [];
  const latest = steps[steps.length - 1]?.eventId ?? 0;

  useEffect(() => {
    let live = true;
    get<MessageView>(path`/message/${instance}/${id}`)
      .then((answer) => live && (setMessage(answer), setError("")))
      .catch((err) => live && setError(err instanceof ApiError && err.status === 404 ? `No sent message ${id} on ${instance}.` : (err as Error).message));
    return () => {
      live = false;
    };
    // A new delivery event for it means new figures to show.
  }, [instance, id, latest, done]);

  const cancel = async () => {
    try {
      await del(path`/message/${instance}/${id}`);
      setDone("Cancelled: it will not be sent.");
    } catch (err) {
      setError(`Cancel failed: ${(err as Error).message}`);
    }
  };

  return (
    <main id="main">
      <ScreenTitle>Message history</ScreenTitle>
      <p class="muted">
        Message <code>{id}</code> of <a href={href("instance", instance)}>{instance}</a>: its parts, their references
        and every status. <a href={href("messages", instance)}>All messages</a>
      </p>
      {error && <Notice kind="error">{error}</Notice>}
      {done && <Notice kind="ok">{done}</Notice>}
      {message && (
        <>
          <section class="card">
            <dl class="pairs">
              <div>
                <dt>To</dt>
                <dd>{message.number}</dd>
              </div>
              <div>
                <dt>Status</dt>
                <dd>
                  <span class={`badge badge-${message.status}`} data-testid="message-status">
                    {message.status}
                  </span>
                  {message.error && <span class="bad"> — {message.error}</span>}
                </dd>
              </div>
              <div>
                <dt>Text</dt>
                <dd class="wrap">{message.text}</dd>
              </div>
              <div>
                <dt>Priority</dt>
                <dd>{message.priority}</dd>
              </div>
              <div>
                <dt>Accepted</dt>
                <dd>{dateTime(message.createdAt)}</dd>
              </div>
              {message.sendAt && (
                <div>
                  <dt>Not before</dt>
                  <dd>{dateTime(message.sendAt)}</dd>
                </div>
              )}
              {message.validUntil && (
                <div>
                  <dt>Not after</dt>
                  <dd>{dateTime(message.validUntil)}</dd>
                </div>
              )}
              {message.waiting && (
                <div>
                  <dt>Waiting</dt>
                  <dd data-testid="message-waiting">{message.waiting}</dd>
                </div>
              )}
            </dl>
            {message.status === "queued" && (
              <div class="actions">
                <button type="button" class="danger" onClick={() => setAsking(true)}>
                  Cancel this message
                </button>
              </div>
            )}
          </section>
          <h2>Parts</h2>
          {message.parts.length === 0 ? (
            <p class="empty">
              No part went out{message.status === "queued" ? " yet" : ""}
              {message.status === "delivered" || message.status === "sent" ? " through a modem that reports parts (the simulator does not)" : ""}.
            </p>
          ) : (
            <div class="table-wrap">
              <table class="cards" aria-label="Parts">
                <thead>
                  <tr>
                    <th scope="col">Part</th>
                    <th scope="col">Reference</th>
                    <th scope="col">Status</th>
                    <th scope="col">Sent</th>
                  </tr>
                </thead>
                <tbody>
                  {message.parts.map((p) => (
                    <tr data-part={p.part}>
                      <td data-label="Part">
                        {p.part} of {p.total}
                      </td>
                      <td data-label="Reference">{p.reference}</td>
                      <td data-label="Status">
                        <span class={`badge badge-${p.status}`}>{p.status}</span>
                      </td>
                      <td data-label="Sent">{dateTime(p.sentAt)}</td>
                    </tr>
                  ))}
                </tbody>
              </table>
            </div>
          )}
          {steps.length > 0 && (
            <>
              <h2>Delivery events seen here</h2>
              <ol class="steps" aria-label="Delivery events">
                {steps.map((s) => (
                  <li>
                    {s.status} <span class="muted">{timeOf(s.at)}</span>
                    {s.error && <span class="bad"> — {s.error}</span>}
                  </li>
                ))}
              </ol>
            </>
          )}
        </>
      )}
      <Confirm
        open={asking}
        title="Cancel this message?"
        confirm="Cancel the message"
        danger
        onAnswer={(yes) => {
          setAsking(false);
          if (yes) void cancel();
        }}
      >
        <p>It has not been sent yet; once cancelled it never will be.</p>
      </Confirm>
    </main>
  );
}
