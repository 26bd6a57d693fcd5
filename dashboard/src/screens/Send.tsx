// Sending a text to a number or a broadcast group, and watching each
// message's delivery events come in.
import { useEffect, useState } from "preact/hooks";
import { get, path, post } from "../api";
import { Field, Notice, ScreenTitle, timeOf } from "../components/ui";
import { go, href } from "../router";
import { deliveries, instances } from "../state";
import { Store, useStore } from "../store";
import * as check from "../validate";

interface Group {
  id: string;
  subject: string;
  size: number;
}

interface Sent {
  id: string;
  instance: string;
  to: string;
  text: string;
  at: number;
}

/** Messages sent from this tab, newest first, kept across screens. */
const sent = new Store<Sent[]>([]);
const MAX_SENT = 50;
/** The default of `limits.max_text_length`; the server has the last word. */
const MAX_TEXT = 4096;

interface SendAnswer {
  id?: string;
  number?: string;
  groupJid?: string;
  messages?: { id: string; number: string }[];
}

function Tracked(props: { message: Sent }) {
  const steps = useStore(deliveries).get(props.message.id) ?? [];
  const last = steps[steps.length - 1];
  const state = last?.status ?? "sending";
  return (
    <li class="tracked" data-message={props.message.id} data-status={state}>
      <div class="tracked-head">
        <span class={`badge badge-${state}`}>{state}</span>
        <span>
          to <strong>{props.message.to}</strong> from {props.message.instance}
        </span>
        <a class="small" href={href("message", props.message.instance, props.message.id)}>
          history
        </a>
      </div>
      <p class="muted wrap">“{props.message.text.slice(0, 200)}”</p>
      <ol class="steps" aria-label="Delivery events">
        {steps.map((s) => (
          <li>
            {s.status} <span class="muted">{timeOf(s.at)}</span>
            {s.error && <span class="bad"> — {s.error}</span>}
          </li>
        ))}
      </ol>
    </li>
  );
}

export function Send(props: { instance?: string }) {
  const names = [...useStore(instances).keys()].sort();
  const instance = props.instance && names.includes(props.instance) ? props.instance : names[0] ?? "";
  const [to, setTo] = useState<"number" | "group">("number");
  const [number, setNumber] = useState("");
  const [group, setGroup] = useState("");
  const [groups, setGroups] = useState<Group[] | null>(null);
  const [text, setText] = useState("");
  const [touched, setTouched] = useState(false);
  const [error, setError] = useState("");
  const [busy, setBusy] = useState(false);
  const history = useStore(sent);

  useEffect(() => {
    setGroups(null);
    setGroup("");
    if (!instance) return;
    get<Group[]>(path`/group/fetchAllGroups/${instance}?getParticipants=false`)
      .then((g) => setGroups(g))
      .catch(() => setGroups([]));
  }, [instance]);

  const numberError = touched && to === "number" ? check.phoneNumber(number, true) : undefined;
  const groupError = touched && to === "group" && !group ? "Choose a group." : undefined;
  const textError = touched ? (!text.trim() ? "Write the text." : text.length > MAX_TEXT ? `At most ${MAX_TEXT} characters.` : undefined) : undefined;

  const submit = async (e: Event) => {
    e.preventDefault();
    setTouched(true);
    setError("");
    const bad = (to === "number" ? check.phoneNumber(number, true) : group ? undefined : "group") ?? (!text.trim() || text.length > MAX_TEXT ? "text" : undefined);
    if (bad || !instance) {
      requestAnimationFrame(() => document.querySelector<HTMLElement>("[aria-invalid=true]")?.focus());
      return;
    }
    setBusy(true);
    try {
      const recipient = to === "number" ? number.trim() : group;
      const answer = await post<SendAnswer>(path`/message/sendText/${instance}`, { number: recipient, text });
      const now = Date.now();
      const messages = answer.messages ?? [{ id: answer.id ?? "", number: answer.number ?? recipient }];
      sent.update((list) =>
        [...messages.map((m) => ({ id: m.id, instance, to: m.number, text, at: now })), ...list].slice(0, MAX_SENT),
      );
      setText("");
      setTouched(false);
    } catch (err) {
      setError((err as Error).message);
    } finally {
      setBusy(false);
    }
  };

  if (!names.length) {
    return (
      <main id="main">
        <ScreenTitle>Send a text</ScreenTitle>
        <p class="empty">There is no instance to send from yet.</p>
      </main>
    );
  }

  return (
    <main id="main">
      <ScreenTitle>Send a text</ScreenTitle>
      <div class="columns">
        <form class="card form" onSubmit={submit} novalidate>
          <div class="field">
            <label for="send-instance">From instance</label>
            <select id="send-instance" value={instance} onChange={(e) => go("send", e.currentTarget.value)}>
              {names.map((n) => (
                <option value={n}>{n}</option>
              ))}
            </select>
          </div>
          <fieldset>
            <legend>To</legend>
            <div class="choices">
              <label class="choice">
                <input type="radio" name="to" checked={to === "number"} onChange={() => setTo("number")} /> a number
              </label>
              <label class="choice">
                <input type="radio" name="to" checked={to === "group"} onChange={() => setTo("group")} /> a group
              </label>
            </div>
          </fieldset>
          {to === "number" ? (
            <Field id="send-number" label="Number" error={numberError} hint="With the country code, e.g. +15551234567.">
              {(a) => <input {...a} type="tel" autocomplete="off" value={number} onInput={(e) => setNumber(e.currentTarget.value)} />}
            </Field>
          ) : (
            <div class={`field${groupError ? " field-invalid" : ""}`}>
              <label for="send-group">Group</label>
              <select
                id="send-group"
                value={group}
                onChange={(e) => setGroup(e.currentTarget.value)}
                aria-invalid={groupError ? "true" : undefined}
                aria-describedby={groupError ? "send-group-error" : undefined}
              >
                <option value="">{groups === null ? "loading…" : groups.length ? "choose a group" : "this instance has no groups"}</option>
                {(groups ?? []).map((g) => (
                  <option value={g.id}>
                    {g.subject} ({g.size} member{g.size === 1 ? "" : "s"})
                  </option>
                ))}
              </select>
              {groupError && (
                <small id="send-group-error" class="field-error">
                  {groupError}
                </small>
              )}
            </div>
          )}
          <div class={`field${textError ? " field-invalid" : ""}`}>
            <label for="send-text">Text</label>
            <textarea
              id="send-text"
              rows={4}
              value={text}
              onInput={(e) => setText(e.currentTarget.value)}
              aria-invalid={textError ? "true" : undefined}
              aria-describedby={`send-text-count${textError ? " send-text-error" : ""}`}
            />
            <small id="send-text-count" class="hint">
              {text.length} characters
            </small>
            {textError && (
              <small id="send-text-error" class="field-error">
                {textError}
              </small>
            )}
          </div>
          {error && <Notice kind="error">The server refused: {error}</Notice>}
          <div class="actions">
            <button type="submit" class="primary" disabled={busy}>
              {busy ? "Sending…" : "Send"}
            </button>
          </div>
        </form>
        <section class="card" aria-labelledby="sent-title">
          <h2 id="sent-title">Sent from this tab</h2>
          {history.length === 0 ? (
            <p class="muted">Messages you send appear here with each delivery event as it happens.</p>
          ) : (
            <ul class="tracked-list" aria-live="polite">
              {history.map((m) => (
                <Tracked key={m.id} message={m} />
              ))}
            </ul>
          )}
        </section>
      </div>
    </main>
  );
}
