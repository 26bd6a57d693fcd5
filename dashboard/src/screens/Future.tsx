// SLOTS: the screens for the cluster (issue 11) and the gateway (issue 12).
// Each asks its route; a 404 `no route` means this server does not have the
// API yet and says so, anything else is shown as the server answered.
import { useEffect, useState } from "preact/hooks";
import { get, isMissingRoute } from "../api";
import { DataView, Notice, ScreenTitle, Unavailable } from "../components/ui";
import { FUTURE } from "../future";
import { href } from "../router";
import { instances } from "../state";
import { useStore } from "../store";

type Load = { state: "loading" } | { state: "missing" } | { state: "error"; message: string } | { state: "ok"; value: unknown };

function useRouteData(route: string | null): Load {
  const [load, setLoad] = useState<Load>({ state: "loading" });
  useEffect(() => {
    if (!route) return;
    let live = true;
    setLoad({ state: "loading" });
    get<unknown>(route)
      .then((value) => live && setLoad({ state: "ok", value }))
      .catch((err) => live && setLoad(isMissingRoute(err) ? { state: "missing" } : { state: "error", message: (err as Error).message }));
    return () => {
      live = false;
    };
  }, [route]);
  return load;
}

function Answer(props: { load: Load; what: string; route: string; issue: string }) {
  const { load } = props;
  if (load.state === "loading") return <p class="muted">Loading…</p>;
  if (load.state === "missing") return <Unavailable what={props.what} route={props.route} issue={props.issue} />;
  if (load.state === "error") return <Notice kind="error">{load.message}</Notice>;
  return (
    <section class="card">
      <DataView value={load.value} />
    </section>
  );
}

/** SLOT(cluster): nodes, their heartbeats and the instances each drives. */
export function Cluster() {
  const load = useRouteData(FUTURE.clusterNodes);
  return (
    <main id="main">
      <ScreenTitle>Cluster</ScreenTitle>
      <p class="muted">The nodes sharing this database, and which instances each one drives.</p>
      <Answer load={load} what="The cluster view" route={`GET ${FUTURE.clusterNodes}`} issue="the cluster (issue 11)" />
    </main>
  );
}

/** SLOT(pools): pools, members, queue lengths, throttle and quota use. */
export function Pools() {
  const load = useRouteData(FUTURE.pools);
  return (
    <main id="main">
      <ScreenTitle>Pools</ScreenTitle>
      <p class="muted">Groups of instances that share sending, with their queues, throttles and quotas.</p>
      <Answer load={load} what="The pools view" route={`GET ${FUTURE.pools}`} issue="the gateway (issue 12)" />
    </main>
  );
}

/** SLOT(message history): one message's parts, references and statuses,
 * or (without an id) an instance's messages. */
export function Message(props: { instance?: string; id?: string }) {
  const names = [...useStore(instances).keys()].sort();
  const instance = props.instance ?? names[0];
  const route = instance ? (props.id ? FUTURE.message(instance, props.id) : FUTURE.messages(instance)) : null;
  const load = useRouteData(route);
  return (
    <main id="main">
      <ScreenTitle>{props.id ? "Message history" : "Messages"}</ScreenTitle>
      {props.id ? (
        <p class="muted">
          Message <code>{props.id}</code> of <a href={href("instance", instance ?? "")}>{instance}</a>: its parts, their
          references and every status.
        </p>
      ) : (
        <p class="muted">Messages of {instance ?? "an instance"}; open one from the events or the send screen.</p>
      )}
      {!route ? (
        <p class="empty">No instance to show messages of.</p>
      ) : (
        <Answer load={load} what="Message history" route={props.id ? "GET /message/{instance}/{id}" : "GET /message/find/{instance}"} issue="the gateway (issue 12)" />
      )}
    </main>
  );
}
