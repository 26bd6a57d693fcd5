// The cluster: the nodes sharing this deployment's PostgreSQL, whether each
// is alive, and which instances each one drives. Refreshed every few
// seconds, since heartbeats and placement change on their own.
import { useEffect, useState } from "preact/hooks";
import { get } from "../api";
import { Notice, ScreenTitle, timeOf } from "../components/ui";
import { href } from "../router";
import { instances } from "../state";
import { useStore } from "../store";

export interface NodeView {
  id: string;
  address?: string | null;
  version: string;
  startedAt: string;
  lastHeartbeat: string;
  alive: boolean;
  instances: string[];
}

const REFRESH_MS = 5000;

export function Cluster() {
  const [nodes, setNodes] = useState<NodeView[] | null>(null);
  const [error, setError] = useState("");
  const rows = useStore(instances);
  useEffect(() => {
    let live = true;
    const load = () =>
      get<NodeView[]>("/cluster/nodes")
        .then((answer) => live && (setNodes(answer), setError("")))
        .catch((err) => live && setError((err as Error).message));
    void load();
    const timer = setInterval(load, REFRESH_MS);
    return () => {
      live = false;
      clearInterval(timer);
    };
  }, []);
  // Pinned instances whose node is missing from the list are worth a word.
  const pinned = [...rows.values()].filter((r) => r.view.node && !nodes?.some((n) => n.id === r.view.node && n.alive));

  return (
    <main id="main">
      <ScreenTitle>Cluster</ScreenTitle>
      <p class="muted">The nodes sharing this database, and which instances each one drives.</p>
      {error && <Notice kind="error">Could not load the nodes: {error}</Notice>}
      {nodes === null && !error && <p class="muted">Loading…</p>}
      {nodes && nodes.length === 0 && (
        <p class="empty" data-testid="single-node">
          This server runs alone on its embedded database: one node drives every instance. Several nodes share one
          PostgreSQL database (see the README's cluster section).
        </p>
      )}
      {nodes && nodes.length > 0 && (
        <div class="table-wrap">
          <table class="cards" aria-label="Nodes">
            <thead>
              <tr>
                <th scope="col">Node</th>
                <th scope="col">State</th>
                <th scope="col">Address</th>
                <th scope="col">Version</th>
                <th scope="col">Last heartbeat</th>
                <th scope="col">Instances it drives</th>
              </tr>
            </thead>
            <tbody>
              {nodes.map((node) => (
                <tr data-node={node.id}>
                  <th scope="row" data-label="Node">
                    {node.id}
                  </th>
                  <td data-label="State">
                    <span class={`badge badge-${node.alive ? "open" : "close"}`}>{node.alive ? "alive" : "down"}</span>
                  </td>
                  <td data-label="Address">{node.address ? <code>{node.address}</code> : "–"}</td>
                  <td data-label="Version">{node.version}</td>
                  <td data-label="Last heartbeat" title={node.lastHeartbeat}>
                    {timeOf(node.lastHeartbeat)}
                    <div class="muted small">up since {timeOf(node.startedAt)}</div>
                  </td>
                  <td data-label="Instances">
                    {node.instances.length === 0 ? (
                      <span class="muted">none</span>
                    ) : (
                      <ul class="inline-list">
                        {node.instances.map((name) => (
                          <li>
                            <a href={href("instance", name)}>{name}</a>
                          </li>
                        ))}
                      </ul>
                    )}
                  </td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      )}
      {pinned.length > 0 && (
        <Notice kind="info">
          Pinned to a node that is down, so not driven until it returns:{" "}
          {pinned.map((r) => `${r.view.instanceName} (on ${r.view.node})`).join(", ")}.
        </Notice>
      )}
    </main>
  );
}
