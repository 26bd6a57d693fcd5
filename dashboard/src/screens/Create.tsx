// Creating an instance on the simulator, a serial port or a TCP bridge.
import { useState } from "preact/hooks";
import { ApiError, post, type InstanceView } from "../api";
import { Field, Notice, ScreenTitle } from "../components/ui";
import { href } from "../router";
import { loadInstances } from "../state";
import * as check from "../validate";

type Kind = "simulator" | "serial" | "tcp";

const initial = {
  name: "",
  number: "",
  // simulator
  echo: true,
  rate: "",
  sentDelay: "",
  deliveredDelay: "",
  // serial
  port: "",
  baud: "115200",
  flow: "none",
  // tcp
  address: "",
  // retention
  maxAgeSecs: "",
  maxEvents: "",
};

type Form = typeof initial;

function errorsOf(kind: Kind, f: Form): Partial<Record<keyof Form, string>> {
  const errors: Partial<Record<keyof Form, string>> = {
    name: check.instanceName(f.name.trim()),
    number: check.phoneNumber(f.number),
    maxAgeSecs: check.integerIn(f.maxAgeSecs, 0, Number.MAX_SAFE_INTEGER, "a number of seconds"),
    maxEvents: check.integerIn(f.maxEvents, 0, Number.MAX_SAFE_INTEGER, "a number of events"),
  };
  if (kind === "simulator") {
    errors.rate = check.decimalIn(f.rate, 0, 1_000_000);
    errors.sentDelay = check.integerIn(f.sentDelay, 0, 3_600_000, "a delay in ms");
    errors.deliveredDelay = check.integerIn(f.deliveredDelay, 0, 3_600_000, "a delay in ms");
  } else if (kind === "serial") {
    errors.port = f.port.trim() ? undefined : "Enter the serial port, for example /dev/ttyUSB2.";
    errors.baud = check.integerIn(f.baud, 300, 4_000_000, "a baud rate", true);
  } else {
    errors.address = check.hostPort(f.address);
  }
  for (const key of Object.keys(errors) as (keyof Form)[]) if (!errors[key]) delete errors[key];
  return errors;
}

function driverOf(kind: Kind, f: Form): Record<string, unknown> {
  const driver: Record<string, unknown> = { kind };
  if (f.number.trim()) driver.number = f.number.trim();
  if (kind === "simulator") {
    driver.echo = f.echo;
    if (f.rate.trim()) driver.rate = Number(f.rate);
    if (f.sentDelay.trim()) driver.sent_delay_ms = Number(f.sentDelay);
    if (f.deliveredDelay.trim()) driver.delivered_delay_ms = Number(f.deliveredDelay);
  } else if (kind === "serial") {
    driver.port = f.port.trim();
    driver.baud = Number(f.baud);
    driver.flow_control = f.flow;
  } else {
    driver.address = f.address.trim();
  }
  return driver;
}

export function Create() {
  const [kind, setKind] = useState<Kind>("simulator");
  const [form, setForm] = useState<Form>(initial);
  const [touched, setTouched] = useState(false);
  const [serverError, setServerError] = useState("");
  const [busy, setBusy] = useState(false);
  const [created, setCreated] = useState<{ name: string; key: string } | null>(null);
  const errors = touched ? errorsOf(kind, form) : {};
  const set = (key: keyof Form) => (e: Event) => {
    const input = e.currentTarget as HTMLInputElement;
    setForm({ ...form, [key]: input.type === "checkbox" ? input.checked : input.value });
  };

  const submit = async (e: Event) => {
    e.preventDefault();
    setTouched(true);
    setServerError("");
    const found = errorsOf(kind, form);
    if (Object.keys(found).length) {
      // Take the keyboard to the first field that needs fixing.
      const first = Object.keys(found)[0];
      requestAnimationFrame(() => document.getElementById(`create-${first}`)?.focus());
      return;
    }
    setBusy(true);
    try {
      const retention: Record<string, number> = {};
      if (form.maxAgeSecs.trim()) retention.maxAgeSecs = Number(form.maxAgeSecs);
      if (form.maxEvents.trim()) retention.maxEvents = Number(form.maxEvents);
      const answer = await post<{ instance: InstanceView; hash: string }>("/instance/create", {
        instanceName: form.name.trim(),
        driver: driverOf(kind, form),
        ...(Object.keys(retention).length ? { retention } : {}),
      });
      setCreated({ name: answer.instance.instanceName, key: answer.hash });
      setForm(initial);
      setTouched(false);
      void loadInstances();
    } catch (err) {
      setServerError(err instanceof ApiError ? err.message : String(err));
    } finally {
      setBusy(false);
    }
  };

  const text = (key: keyof Form, label: string, attrs: Record<string, unknown> = {}, hint?: string) => (
    <Field id={`create-${key}`} label={label} error={errors[key]} hint={hint}>
      {(a) => <input {...a} {...attrs} value={form[key] as string} onInput={set(key)} />}
    </Field>
  );

  return (
    <main id="main">
      <ScreenTitle>New instance</ScreenTitle>
      {created && (
        <div class="card created" role="status">
          <p>
            <strong>{created.name}</strong> was created. Its key is shown only this once: keep it to give someone
            access to this instance alone.
          </p>
          <p>
            <label for="created-key">Instance key</label>
            <input id="created-key" readOnly value={created.key} onFocus={(e) => e.currentTarget.select()} />
          </p>
          <p>
            <a href={href("instance", created.name)}>Open {created.name}</a> · <a href={href("instances")}>All instances</a>
          </p>
        </div>
      )}
      <form class="card form" onSubmit={submit} novalidate aria-describedby={serverError ? "create-server-error" : undefined}>
        {text("name", "Name", { autocomplete: "off", spellcheck: false }, "Letters, digits, '_' and '-'; up to 64.")}
        <fieldset>
          <legend>Driver</legend>
          <div class="choices">
            {(["simulator", "serial", "tcp"] as Kind[]).map((k) => (
              <label class="choice">
                <input type="radio" name="kind" value={k} checked={kind === k} onChange={() => setKind(k)} />
                {k === "simulator" ? "Simulator" : k === "serial" ? "Serial port" : "TCP bridge (ser2net)"}
              </label>
            ))}
          </div>
        </fieldset>
        {kind === "simulator" && (
          <div class="grid">
            <div class="field">
              <label class="choice">
                <input type="checkbox" checked={form.echo} onChange={set("echo")} /> Recipients answer with an echo
              </label>
            </div>
            {text("rate", "Random events per second", { inputMode: "decimal" }, "0 or empty: none.")}
            {text("sentDelay", "Sent after (ms)", { inputMode: "numeric" }, "Default 50.")}
            {text("deliveredDelay", "Delivered after (ms)", { inputMode: "numeric" }, "Default 150.")}
          </div>
        )}
        {kind === "serial" && (
          <div class="grid">
            {text("port", "Serial port", { spellcheck: false }, "The modem's AT port, e.g. /dev/ttyUSB2.")}
            {text("baud", "Baud rate", { inputMode: "numeric" })}
            <div class="field">
              <label for="create-flow">Flow control</label>
              <select id="create-flow" value={form.flow} onChange={set("flow")}>
                <option value="none">none</option>
                <option value="hardware">hardware (RTS/CTS)</option>
                <option value="software">software (XON/XOFF)</option>
              </select>
            </div>
          </div>
        )}
        {kind === "tcp" && (
          <div class="grid">{text("address", "Bridge address", { spellcheck: false }, "host:port of the ser2net port.")}</div>
        )}
        <div class="grid">
          {text("number", "Own number (optional)", { inputMode: "tel" }, kind === "simulator" ? "Derived from the name when empty." : "Asked from the SIM when empty.")}
          {text("maxAgeSecs", "Keep events for (seconds)", { inputMode: "numeric" }, "Empty: the server's default; 0: forever.")}
          {text("maxEvents", "Keep at most (events)", { inputMode: "numeric" }, "Empty: the server's default; 0: no limit.")}
        </div>
        {serverError && (
          <Notice kind="error" id="create-server-error">
            The server refused: {serverError}
          </Notice>
        )}
        <div class="actions">
          <a class="button" href={href("instances")}>
            Cancel
          </a>
          <button type="submit" class="primary" disabled={busy}>
            {busy ? "Creating…" : "Create instance"}
          </button>
        </div>
      </form>
    </main>
  );
}
