// Small pieces every screen uses.
import type { ComponentChildren } from "preact";
import { useEffect, useRef } from "preact/hooks";

export function Notice(props: { kind: "error" | "info" | "ok"; children: ComponentChildren; id?: string }) {
  // Errors interrupt a screen reader; the rest waits its turn.
  return (
    <p class={`notice notice-${props.kind}`} role={props.kind === "error" ? "alert" : "status"} id={props.id}>
      {props.children}
    </p>
  );
}

export function StateBadge(props: { state: string }) {
  const label: Record<string, string> = { open: "open", connecting: "connecting", close: "closed" };
  return <span class={`badge badge-${props.state}`}>{label[props.state] ?? props.state}</span>;
}

/** The heading of a screen; it takes the focus when the screen opens, so
 * keyboard and screen-reader users land on the new content. */
export function ScreenTitle(props: { children: ComponentChildren }) {
  const ref = useRef<HTMLHeadingElement>(null);
  useEffect(() => ref.current?.focus(), []);
  return (
    <h1 tabIndex={-1} ref={ref}>
      {props.children}
    </h1>
  );
}

/** What a field gives its control: its id and the accessible links to the
 * hint and the error. */
export interface FieldAttributes {
  id: string;
  "aria-invalid"?: "true";
  "aria-describedby"?: string;
}

/** A labelled form field with its validation message. */
export function Field(props: {
  id: string;
  label: string;
  error?: string;
  hint?: string;
  children: (attrs: FieldAttributes) => ComponentChildren;
}) {
  const described = [props.hint && `${props.id}-hint`, props.error && `${props.id}-error`].filter(Boolean).join(" ");
  return (
    <div class={`field${props.error ? " field-invalid" : ""}`}>
      <label for={props.id}>{props.label}</label>
      {props.children({
        id: props.id,
        "aria-invalid": props.error ? "true" : undefined,
        "aria-describedby": described || undefined,
      })}
      {props.hint && (
        <small id={`${props.id}-hint`} class="hint">
          {props.hint}
        </small>
      )}
      {props.error && (
        <small id={`${props.id}-error`} class="field-error">
          {props.error}
        </small>
      )}
    </div>
  );
}

/** A modal question: the browser's own dialog traps the focus and closes
 * on Escape. */
export function Confirm(props: {
  open: boolean;
  title: string;
  children: ComponentChildren;
  confirm: string;
  danger?: boolean;
  onAnswer: (yes: boolean) => void;
}) {
  const ref = useRef<HTMLDialogElement>(null);
  useEffect(() => {
    const dialog = ref.current;
    if (!dialog) return;
    if (props.open && !dialog.open) dialog.showModal();
    if (!props.open && dialog.open) dialog.close();
  }, [props.open]);
  return (
    <dialog ref={ref} aria-labelledby="confirm-title" onCancel={() => props.onAnswer(false)}>
      <h2 id="confirm-title">{props.title}</h2>
      <div>{props.children}</div>
      <div class="actions">
        <button type="button" onClick={() => props.onAnswer(false)} autofocus>
          Cancel
        </button>
        <button type="button" class={props.danger ? "danger" : "primary"} onClick={() => props.onAnswer(true)}>
          {props.confirm}
        </button>
      </div>
    </dialog>
  );
}

/** A line chart of recent values, drawn as SVG: a polyline is all a
 * sparkline is, so no chart library is bundled for it. */
export function Sparkline(props: { label: string; values: number[]; unit: string; format?: (v: number) => string }) {
  const format = props.format ?? ((v: number) => (Number.isInteger(v) ? String(v) : v.toFixed(1)));
  const values = props.values;
  const width = 300;
  const height = 64;
  const highest = values.length ? Math.max(...values) : 0;
  // A flat line at zero sits on the axis rather than filling the height.
  const max = highest > 0 ? highest : 1;
  const step = values.length > 1 ? width / (values.length - 1) : width;
  const points = values.map((v, i) => `${(i * step).toFixed(1)},${(height - 4 - (v / max) * (height - 8)).toFixed(1)}`).join(" ");
  const last = values.length ? values[values.length - 1] : undefined;
  const summary =
    last === undefined
      ? `${props.label}: no samples yet`
      : `${props.label}: now ${format(last)} ${props.unit}, highest ${format(highest)} over the last ${values.length} samples`;
  return (
    <figure class="chart">
      <figcaption>
        <span>{props.label}</span>
        <strong data-testid={`chart-${props.label}`}>{last === undefined ? "–" : `${format(last)} ${props.unit}`}</strong>
      </figcaption>
      <svg viewBox={`0 0 ${width} ${height}`} role="img" aria-label={summary} preserveAspectRatio="none">
        <line x1="0" y1={height - 4} x2={width} y2={height - 4} class="axis" />
        {values.length > 1 && <polyline points={points} class="line" />}
      </svg>
      <small class="hint">highest {format(highest)}</small>
    </figure>
  );
}

/** Any JSON the server answers, readable: objects as term lists, lists of
 * objects as tables. The screens for APIs that do not exist yet (cluster,
 * pools, message history) show their answers with it until they get
 * screens of their own. */
export function DataView(props: { value: unknown }) {
  const value = props.value;
  if (value === null || value === undefined) return <span class="muted">–</span>;
  if (Array.isArray(value)) {
    if (!value.length) return <span class="muted">none</span>;
    if (value.every((v) => v && typeof v === "object" && !Array.isArray(v))) {
      const columns = [...new Set(value.flatMap((v) => Object.keys(v as object)))];
      return (
        <div class="table-wrap">
          <table class="cards">
            <thead>
              <tr>
                {columns.map((c) => (
                  <th scope="col">{c}</th>
                ))}
              </tr>
            </thead>
            <tbody>
              {value.map((row) => (
                <tr>
                  {columns.map((c) => (
                    <td data-label={c}>
                      <DataView value={(row as Record<string, unknown>)[c]} />
                    </td>
                  ))}
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      );
    }
    return <span>{value.map((v) => (typeof v === "object" ? JSON.stringify(v) : String(v))).join(", ")}</span>;
  }
  if (typeof value === "object") {
    return (
      <dl class="pairs">
        {Object.entries(value as Record<string, unknown>).map(([k, v]) => (
          <div>
            <dt>{k}</dt>
            <dd>
              <DataView value={v} />
            </dd>
          </div>
        ))}
      </dl>
    );
  }
  return <span>{String(value)}</span>;
}

export function timeOf(timestamp: string | undefined): string {
  if (!timestamp) return "";
  const date = new Date(timestamp);
  return Number.isNaN(date.getTime()) ? timestamp : date.toLocaleTimeString();
}
