// The instances: their state, driver, signal and operator, and what can be
// done to them.
import { useState } from "preact/hooks";
import { del, get, path, post, type Driver } from "../api";
import { Confirm, Notice, ScreenTitle, StateBadge, timeOf } from "../components/ui";
import { href } from "../router";
import { session } from "../session";
import { instances, instancesError, loadInstances, type InstanceRow } from "../state";
import { useStore } from "../store";

export function driverSummary(driver: Driver): string {
  switch (driver.kind) {
    case "serial":
      return `serial ${driver.port ?? ""}${driver.baud ? ` @ ${driver.baud}` : ""}`;
    case "tcp":
      return `tcp ${driver.address ?? ""}`;
    default:
      return "simulator";
  }
}

/** Signal in dBm, with a word for it. */
export function signalText(dbm: number | undefined): string {
  if (dbm === undefined) return "–";
  const word = dbm >= -70 ? "excellent" : dbm >= -85 ? "good" : dbm >= -100 ? "fair" : "poor";
  return `${dbm} dBm (${word})`;
}

/** Connect, restart, log out and delete: the same buttons in the list and
 * on an instance's own screen. */
export function InstanceActions(props: { name: string; onDone?: (message: string) => void; compact?: boolean }) {
  const who = useStore(session);
  const [busy, setBusy] = useState("");
  const [error, setError] = useState("");
  const [asking, setAsking] = useState(false);
  const name = props.name;

  const run = async (label: string, call: () => Promise<{ instance?: { state?: string } }>) => {
    setBusy(label);
    setError("");
    try {
      const answer = await call();
      props.onDone?.(`${name}: ${label.toLowerCase()} done${answer.instance?.state ? `, now ${answer.instance.state}` : ""}.`);
      await loadInstances();
    } catch (err) {
      setError(`${label} failed: ${(err as Error).message}`);
    } finally {
      setBusy("");
    }
  };

  return (
    <div class="row-actions" role="group" aria-label={`Actions for ${name}`}>
      <button type="button" disabled={!!busy} onClick={() => run("Connect", () => get(path`/instance/connect/${name}`))}>
        Connect
      </button>
      <button type="button" disabled={!!busy} onClick={() => run("Restart", () => post(path`/instance/restart/${name}`))}>
        Restart
      </button>
      <button type="button" disabled={!!busy} onClick={() => run("Logout", () => del(path`/instance/logout/${name}`))}>
        Log out
      </button>
      {who?.role === "admin" && (
        <button type="button" class="danger" disabled={!!busy} onClick={() => setAsking(true)}>
          Delete
        </button>
      )}
      {error && <Notice kind="error">{error}</Notice>}
      <Confirm
        open={asking}
        title={`Delete ${name}?`}
        confirm={`Delete ${name}`}
        danger
        onAnswer={(yes) => {
          setAsking(false);
          if (yes) void run("Delete", () => del(path`/instance/delete/${name}`));
        }}
      >
        <p>
          Its modem is stopped, its key stops working and its settings are removed. Its events stay in the log until
          retention removes them. This cannot be undone.
        </p>
      </Confirm>
    </div>
  );
}

function Row(props: { row: InstanceRow; onDone: (message: string) => void; showOwner: boolean }) {
  const { view, connection } = props.row;
  const info = connection?.info;
  return (
    <tr data-instance={view.instanceName}>
      <th scope="row" data-label="Instance">
        <a href={href("instance", view.instanceName)}>{view.instanceName}</a>
        {info?.me?.id && <div class="muted small">{info.me.id}</div>}
      </th>
      <td data-label="State">
        <StateBadge state={view.status} />
        {connection?.reason && <div class="muted small">{connection.reason}</div>}
      </td>
      <td data-label="Driver">{driverSummary(view.driver)}</td>
      <td data-label="Signal" data-testid="signal">
        {signalText(info?.signal)}
      </td>
      <td data-label="Operator" data-testid="operator">
        {info?.operator ?? "–"}
        {info?.registration && <div class="muted small">{info.registration}</div>}
      </td>
      {props.showOwner && <td data-label="Node">{view.owner ?? view.node ?? "–"}</td>}
      <td data-label="Last status">{timeOf(props.row.connectionAt) || "–"}</td>
      <td data-label="Actions">
        <InstanceActions name={view.instanceName} onDone={props.onDone} compact />
      </td>
    </tr>
  );
}

export function Instances() {
  const rows = [...useStore(instances).values()].sort((a, b) => a.view.instanceName.localeCompare(b.view.instanceName));
  const error = useStore(instancesError);
  const who = useStore(session);
  const [done, setDone] = useState("");
  // The node column appears once the server reports owners (issue 11).
  const showOwner = rows.some((r) => r.view.owner !== undefined || r.view.node !== undefined);

  return (
    <main id="main">
      <div class="screen-head">
        <ScreenTitle>Instances</ScreenTitle>
        {who?.role === "admin" && (
          <a class="button primary" href={href("create")}>
            New instance
          </a>
        )}
      </div>
      {error && <Notice kind="error">Could not load the instances: {error}</Notice>}
      {done && <Notice kind="ok">{done}</Notice>}
      {rows.length === 0 && !error ? (
        <p class="empty">
          No instances yet.{" "}
          {who?.role === "admin" && (
            <>
              <a href={href("create")}>Create one</a> on the simulator to try things out.
            </>
          )}
        </p>
      ) : (
        <div class="table-wrap">
          <table class="cards" aria-label="Instances">
            <thead>
              <tr>
                <th scope="col">Instance</th>
                <th scope="col">State</th>
                <th scope="col">Driver</th>
                <th scope="col">Signal</th>
                <th scope="col">Operator</th>
                {showOwner && <th scope="col">Node</th>}
                <th scope="col">Last status</th>
                <th scope="col">Actions</th>
              </tr>
            </thead>
            <tbody>
              {rows.map((row) => (
                <Row key={row.view.instanceName} row={row} onDone={setDone} showOwner={showOwner} />
              ))}
            </tbody>
          </table>
        </div>
      )}
    </main>
  );
}
