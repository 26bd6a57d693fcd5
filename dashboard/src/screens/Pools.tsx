// Pools: groups of instances that share sending. Each shows its strategy,
// the messages waiting for a member, how much of its throttle is used, and
// per member its state, own queue and what it sent for the pool. The admin
// creates and deletes pools here; an instance key sees the pools its
// instance belongs to, with only its own member row.
import { useEffect, useState } from "preact/hooks";
import { ApiError, del, get, post } from "../api";
import { Confirm, Field, Notice, ScreenTitle, StateBadge, timeOf } from "../components/ui";
import { href } from "../router";
import { session } from "../session";
import { instances } from "../state";
import { useStore } from "../store";
import * as check from "../validate";

export type Strategy = "round_robin" | "failover" | "least_loaded";

export interface Throttle {
  perMinute?: number;
  perDay?: number;
  perMonth?: number;
}

export interface PoolView {
  name: string;
  strategy: Strategy;
  members: string[];
  rules: { prefix: string; members: string[] }[];
  throttle: Throttle;
  queued: number;
  used: { minute: number; day: number; month: number };
  load: { instance: string; state: string; queued: number; sent: number }[];
  createdAt: string;
}

const STRATEGIES: { value: Strategy; label: string; hint: string }[] = [
  { value: "round_robin", label: "Round robin", hint: "members take turns" },
  { value: "failover", label: "Failover", hint: "the first healthy member in order sends everything" },
  { value: "least_loaded", label: "Least loaded", hint: "the member with the shortest queue sends" },
];

const REFRESH_MS = 5000;

/** "12 / 100" for a limit, "12" when none is set. */
function use(used: number, limit: number | undefined): string {
  return limit === undefined ? `${used}` : `${used} / ${limit}`;
}

export function Pools() {
  const who = useStore(session);
  const admin = who?.role === "admin";
  const [pools, setPools] = useState<PoolView[] | null>(null);
  const [error, setError] = useState("");
  const [deleting, setDeleting] = useState<string | null>(null);
  const [notice, setNotice] = useState("");

  const load = () =>
    get<{ pools: PoolView[] }>("/pool/find")
      .then((answer) => (setPools(answer.pools), setError("")))
      .catch((err) => setError((err as Error).message));
  useEffect(() => {
    void load();
    const timer = setInterval(load, REFRESH_MS);
    return () => clearInterval(timer);
  }, []);

  const remove = async (yes: boolean) => {
    const name = deleting;
    setDeleting(null);
    if (!yes || !name) return;
    try {
      await del(`/pool/delete/${encodeURIComponent(name)}`);
      setNotice(`Pool ${name} was deleted.`);
      void load();
    } catch (err) {
      setError(err instanceof ApiError ? err.message : String(err));
    }
  };

  return (
    <main id="main">
      <ScreenTitle>Pools</ScreenTitle>
      <p class="muted">Groups of instances that share sending, with their queues, throttles and quotas.</p>
      {error && <Notice kind="error">{error}</Notice>}
      {notice && <Notice kind="ok">{notice}</Notice>}
      {pools === null && !error && <p class="muted">Loading…</p>}
      {pools && pools.length === 0 && (
        <p class="empty" data-testid="no-pools">
          {admin
            ? "No pools yet. A pool lets one send go out through whichever of its instances should take it."
            : "This instance belongs to no pool."}
        </p>
      )}
      {pools?.map((pool) => (
        <section class="card pool" data-pool={pool.name} aria-labelledby={`pool-${pool.name}`}>
          <div class="pool-head">
            <h2 id={`pool-${pool.name}`}>{pool.name}</h2>
            <span class="badge">{pool.strategy.replace("_", " ")}</span>
            {admin && (
              <button type="button" class="danger small" onClick={() => setDeleting(pool.name)}>
                Delete
              </button>
            )}
          </div>
          <dl class="facts">
            <div>
              <dt>Waiting for a member</dt>
              <dd data-testid="pool-queued">{pool.queued}</dd>
            </div>
            <div>
              <dt>This minute</dt>
              <dd>{use(pool.used.minute, pool.throttle.perMinute)}</dd>
            </div>
            <div>
              <dt>Today</dt>
              <dd>{use(pool.used.day, pool.throttle.perDay)}</dd>
            </div>
            <div>
              <dt>This month</dt>
              <dd>{use(pool.used.month, pool.throttle.perMonth)}</dd>
            </div>
            <div>
              <dt>Created</dt>
              <dd title={pool.createdAt}>{timeOf(pool.createdAt)}</dd>
            </div>
          </dl>
          <div class="table-wrap">
            <table class="cards" aria-label={`Members of ${pool.name}`}>
              <thead>
                <tr>
                  <th scope="col">Member</th>
                  <th scope="col">State</th>
                  <th scope="col">Own queue</th>
                  <th scope="col">Sent for the pool</th>
                </tr>
              </thead>
              <tbody>
                {pool.load.map((member) => (
                  <tr data-member={member.instance}>
                    <th scope="row" data-label="Member">
                      <a href={href("instance", member.instance)}>{member.instance}</a>
                    </th>
                    <td data-label="State">
                      <StateBadge state={member.state} />
                    </td>
                    <td data-label="Own queue">{member.queued}</td>
                    <td data-label="Sent for the pool">{member.sent}</td>
                  </tr>
                ))}
              </tbody>
            </table>
          </div>
          {pool.rules.length > 0 && (
            <ul class="rules" aria-label={`Routing rules of ${pool.name}`}>
              {pool.rules.map((rule) => (
                <li>
                  <code>{rule.prefix}…</code> goes through {rule.members.join(", ")}
                </li>
              ))}
            </ul>
          )}
        </section>
      ))}
      {admin && <CreatePool onCreated={(name) => (setNotice(`Pool ${name} was created.`), void load())} />}
      <Confirm open={deleting !== null} title={`Delete pool ${deleting ?? ""}?`} confirm="Delete pool" danger onAnswer={remove}>
        <p>Its instances stay; texts still waiting in the pool must be sent or cancelled first.</p>
      </Confirm>
    </main>
  );
}

const initial = { name: "", strategy: "round_robin" as Strategy, members: [] as string[], perMinute: "", perDay: "" };
type Form = typeof initial;

function errorsOf(f: Form): Partial<Record<keyof Form, string>> {
  const errors: Partial<Record<keyof Form, string>> = {
    name: check.instanceName(f.name.trim()),
    members: f.members.length ? undefined : "Choose at least one instance.",
    perMinute: check.integerIn(f.perMinute, 1, 10_000, "a number of texts"),
    perDay: check.integerIn(f.perDay, 1, 1_000_000, "a number of texts"),
  };
  for (const key of Object.keys(errors) as (keyof Form)[]) if (!errors[key]) delete errors[key];
  return errors;
}

function CreatePool(props: { onCreated: (name: string) => void }) {
  const rows = useStore(instances);
  const names = [...rows.keys()].sort();
  const [form, setForm] = useState<Form>(initial);
  const [touched, setTouched] = useState(false);
  const [serverError, setServerError] = useState("");
  const [busy, setBusy] = useState(false);
  const errors = touched ? errorsOf(form) : {};
  const text = (key: "name" | "perMinute" | "perDay", label: string, hint: string) => (
    <Field id={`pool-${key}`} label={label} error={errors[key]} hint={hint}>
      {(a) => (
        <input
          {...a}
          value={form[key]}
          inputMode={key === "name" ? undefined : "numeric"}
          autocomplete="off"
          onInput={(e) => setForm({ ...form, [key]: e.currentTarget.value })}
        />
      )}
    </Field>
  );
  const toggle = (name: string) =>
    setForm({
      ...form,
      members: form.members.includes(name) ? form.members.filter((m) => m !== name) : [...form.members, name],
    });

  const submit = async (e: Event) => {
    e.preventDefault();
    setTouched(true);
    setServerError("");
    const found = errorsOf(form);
    if (Object.keys(found).length) {
      const first = Object.keys(found)[0];
      requestAnimationFrame(() => document.getElementById(`pool-${first}`)?.focus());
      return;
    }
    setBusy(true);
    try {
      const throttle: Throttle = {};
      if (form.perMinute.trim()) throttle.perMinute = Number(form.perMinute);
      if (form.perDay.trim()) throttle.perDay = Number(form.perDay);
      const name = form.name.trim();
      await post("/pool/create", { name, strategy: form.strategy, members: form.members, throttle });
      setForm(initial);
      setTouched(false);
      props.onCreated(name);
    } catch (err) {
      setServerError(err instanceof ApiError ? err.message : String(err));
    } finally {
      setBusy(false);
    }
  };

  return (
    <form class="card form" onSubmit={submit} novalidate aria-labelledby="new-pool">
      <h2 id="new-pool">New pool</h2>
      <div class="grid">
        {text("name", "Name", "Letters, digits, '_' and '-'; not an instance's name.")}
        <div class="field">
          <label for="pool-strategy">Strategy</label>
          <select
            id="pool-strategy"
            value={form.strategy}
            onChange={(e) => setForm({ ...form, strategy: e.currentTarget.value as Strategy })}
          >
            {STRATEGIES.map((s) => (
              <option value={s.value}>
                {s.label}: {s.hint}
              </option>
            ))}
          </select>
        </div>
      </div>
      <fieldset id="pool-members" tabIndex={-1} aria-describedby={errors.members ? "pool-members-error" : undefined}>
        <legend>Members (in failover order)</legend>
        {names.length === 0 && <p class="muted">No instances yet.</p>}
        <div class="choices">
          {names.map((name) => (
            <label class="choice">
              <input type="checkbox" checked={form.members.includes(name)} onChange={() => toggle(name)} />
              {name}
              {form.members.includes(name) && <span class="muted small"> #{form.members.indexOf(name) + 1}</span>}
            </label>
          ))}
        </div>
        {errors.members && (
          <small id="pool-members-error" class="field-error">
            {errors.members}
          </small>
        )}
      </fieldset>
      <div class="grid">
        {text("perMinute", "Texts per minute (optional)", "For the whole pool; empty: no limit.")}
        {text("perDay", "Texts per day (optional)", "Resets at midnight UTC.")}
      </div>
      {serverError && <Notice kind="error">The server refused: {serverError}</Notice>}
      <div class="actions">
        <button type="submit" class="primary" disabled={busy}>
          {busy ? "Creating…" : "Create pool"}
        </button>
      </div>
      <p class="muted small">
        Send through a pool with <code>POST /message/sendText/&lt;pool&gt;</code> and the admin key; its messages
        show under <a href={href("messages")}>Messages</a> once a member took them.
      </p>
    </form>
  );
}
