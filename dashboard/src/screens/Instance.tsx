// One instance: its state and driver, its webhook's delivery status and its
// retention.
import { useEffect, useState } from "preact/hooks";
import { ApiError, get, path, post } from "../api";
import { DataView, Field, Notice, ScreenTitle, StateBadge, timeOf } from "../components/ui";
import { href } from "../router";
import { instances } from "../state";
import { useStore } from "../store";
import * as check from "../validate";
import { driverSummary, InstanceActions, signalText } from "./Instances";

interface WebhookAnswer {
  webhook: {
    enabled: boolean;
    url: string;
    headers: string[];
    events: string[];
    createdAt: string;
    status: null | {
      cursor: number;
      delivered: number;
      consecutiveFailures: number;
      lastError?: string | null;
      lastAttemptAt?: string | null;
      lastSuccessAt?: string | null;
      nextRetryAt?: string | null;
    };
  };
}

interface RetentionAnswer {
  retention: {
    maxAgeSecs: number | null;
    maxEvents: number | null;
    effective: { maxAgeSecs: number | null; maxEvents: number | null };
  };
}

function duration(secs: number | null | undefined): string {
  if (!secs) return "forever";
  const units: [number, string][] = [
    [86400, "day"],
    [3600, "hour"],
    [60, "minute"],
  ];
  for (const [size, unit] of units) {
    if (secs % size === 0) {
      const n = secs / size;
      return `${n} ${unit}${n === 1 ? "" : "s"}`;
    }
  }
  return `${secs} seconds`;
}

function Webhook(props: { name: string }) {
  const [answer, setAnswer] = useState<WebhookAnswer["webhook"] | null | undefined>(undefined);
  const [error, setError] = useState("");
  useEffect(() => {
    let live = true;
    const load = () =>
      get<WebhookAnswer>(path`/webhook/find/${props.name}`)
        .then((a) => live && (setAnswer(a.webhook), setError("")))
        .catch((err) => {
          if (!live) return;
          if (err instanceof ApiError && err.status === 404 && !err.message.startsWith("no route")) setAnswer(null);
          else setError((err as Error).message);
        });
    void load();
    // Delivery progress changes on its own: look again every few seconds.
    const timer = setInterval(load, 5000);
    return () => {
      live = false;
      clearInterval(timer);
    };
  }, [props.name]);

  const status = answer?.status;
  return (
    <section class="card" aria-labelledby="webhook-title">
      <h2 id="webhook-title">Webhook</h2>
      {error && <Notice kind="error">{error}</Notice>}
      {answer === undefined && !error && <p class="muted">Loading…</p>}
      {answer === null && <p class="muted">No webhook. Set one with POST /webhook/set/{props.name}.</p>}
      {answer && (
        <dl class="pairs" data-testid="webhook">
          <div>
            <dt>URL</dt>
            <dd class="wrap">{answer.url}</dd>
          </div>
          <div>
            <dt>Enabled</dt>
            <dd>{answer.enabled ? "yes" : "no"}</dd>
          </div>
          <div>
            <dt>Events</dt>
            <dd>{answer.events.join(", ")}</dd>
          </div>
          <div>
            <dt>Delivered</dt>
            <dd>{status ? `${status.delivered} (up to event ${status.cursor})` : "–"}</dd>
          </div>
          <div>
            <dt>Health</dt>
            <dd>
              {!status ? (
                "–"
              ) : status.consecutiveFailures > 0 ? (
                <span class="bad">
                  failing: {status.consecutiveFailures} attempt{status.consecutiveFailures === 1 ? "" : "s"} in a row
                </span>
              ) : (
                <span class="good">delivering</span>
              )}
            </dd>
          </div>
          {status?.lastError && (
            <div>
              <dt>Last error</dt>
              <dd class="wrap">{status.lastError}</dd>
            </div>
          )}
          {status?.nextRetryAt && (
            <div>
              <dt>Next retry</dt>
              <dd>{timeOf(status.nextRetryAt)}</dd>
            </div>
          )}
          {status?.lastSuccessAt && (
            <div>
              <dt>Last success</dt>
              <dd>{timeOf(status.lastSuccessAt)}</dd>
            </div>
          )}
        </dl>
      )}
    </section>
  );
}

function Retention(props: { name: string }) {
  const [answer, setAnswer] = useState<RetentionAnswer["retention"] | null>(null);
  const [error, setError] = useState("");
  const [saved, setSaved] = useState("");
  const [age, setAge] = useState("");
  const [count, setCount] = useState("");
  const [touched, setTouched] = useState(false);
  useEffect(() => {
    get<RetentionAnswer>(path`/retention/find/${props.name}`)
      .then((a) => {
        setAnswer(a.retention);
        setAge(a.retention.maxAgeSecs?.toString() ?? "");
        setCount(a.retention.maxEvents?.toString() ?? "");
      })
      .catch((err) => setError((err as Error).message));
  }, [props.name]);
  const ageError = touched ? check.integerIn(age, 0, Number.MAX_SAFE_INTEGER, "a number of seconds") : undefined;
  const countError = touched ? check.integerIn(count, 0, Number.MAX_SAFE_INTEGER, "a number of events") : undefined;

  const save = async (e: Event) => {
    e.preventDefault();
    setTouched(true);
    setSaved("");
    if (check.integerIn(age, 0, Number.MAX_SAFE_INTEGER, "x") || check.integerIn(count, 0, Number.MAX_SAFE_INTEGER, "x")) return;
    try {
      const a = await post<RetentionAnswer>(path`/retention/set/${props.name}`, {
        maxAgeSecs: age.trim() ? Number(age) : null,
        maxEvents: count.trim() ? Number(count) : null,
      });
      setAnswer(a.retention);
      setError("");
      setSaved("Retention saved.");
    } catch (err) {
      setError((err as Error).message);
    }
  };

  return (
    <section class="card" aria-labelledby="retention-title">
      <h2 id="retention-title">Retention</h2>
      {answer && (
        <p data-testid="retention">
          Keeps events for <strong>{duration(answer.effective.maxAgeSecs)}</strong>,{" "}
          <strong>{answer.effective.maxEvents ? `at most ${answer.effective.maxEvents} events` : "with no count limit"}</strong>
          {answer.maxAgeSecs === null && answer.maxEvents === null ? " (the server's default)." : "."}
        </p>
      )}
      <form onSubmit={save} novalidate class="grid">
        <Field id="retention-age" label="Keep for (seconds)" error={ageError} hint="Empty: the server's default; 0: forever.">
          {(a) => <input {...a} inputMode="numeric" value={age} onInput={(e) => setAge(e.currentTarget.value)} />}
        </Field>
        <Field id="retention-count" label="Keep at most (events)" error={countError} hint="Empty: the server's default; 0: no limit.">
          {(a) => <input {...a} inputMode="numeric" value={count} onInput={(e) => setCount(e.currentTarget.value)} />}
        </Field>
        <div class="actions">
          <button type="submit">Save retention</button>
        </div>
      </form>
      {error && <Notice kind="error">{error}</Notice>}
      {saved && <Notice kind="ok">{saved}</Notice>}
    </section>
  );
}

export function Instance(props: { name: string }) {
  const row = useStore(instances).get(props.name);
  const [done, setDone] = useState("");
  if (!row) {
    return (
      <main id="main">
        <ScreenTitle>{props.name}</ScreenTitle>
        <Notice kind="info">
          No instance by this name is visible to this key (it may have been deleted). <a href={href("instances")}>All instances</a>
        </Notice>
      </main>
    );
  }
  const { view, connection } = row;
  const info = connection?.info;
  return (
    <main id="main">
      <div class="screen-head">
        <ScreenTitle>
          {view.instanceName} <StateBadge state={view.status} />
        </ScreenTitle>
        <div class="links">
          <a href={href("events", view.instanceName)}>Events</a>
          <a href={href("send", view.instanceName)}>Send a text</a>
        </div>
      </div>
      {done && <Notice kind="ok">{done}</Notice>}
      <InstanceActions name={view.instanceName} onDone={setDone} />
      <div class="columns">
        <section class="card" aria-labelledby="modem-title">
          <h2 id="modem-title">Modem</h2>
          <dl class="pairs">
            <div>
              <dt>Driver</dt>
              <dd>{driverSummary(view.driver)}</dd>
            </div>
            <div>
              <dt>Number</dt>
              <dd>{info?.me?.id ?? "–"}</dd>
            </div>
            <div>
              <dt>Signal</dt>
              <dd>{signalText(info?.signal)}</dd>
            </div>
            <div>
              <dt>Operator</dt>
              <dd>
                {info?.operator ?? "–"} {info?.registration && `(${info.registration})`}
              </dd>
            </div>
            {connection?.reason && (
              <div>
                <dt>Reason</dt>
                <dd class="wrap">{connection.reason}</dd>
              </div>
            )}
            {(view.owner ?? view.node) && (
              <div>
                <dt>Node</dt>
                <dd>{view.owner ?? view.node}</dd>
              </div>
            )}
            <div>
              <dt>Created</dt>
              <dd>{new Date(view.createdAt).toLocaleString()}</dd>
            </div>
          </dl>
          <details>
            <summary>Driver settings</summary>
            <DataView value={view.driver} />
          </details>
        </section>
        <Webhook name={view.instanceName} />
        <Retention name={view.instanceName} />
      </div>
    </main>
  );
}
