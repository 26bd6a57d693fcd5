// SLOT: the screen for the gateway's pools (issue 12).
// Each asks its route; a 404 `no route` means this server does not have the
// API yet and says so, anything else is shown as the server answered.
import { useEffect, useState } from "preact/hooks";
import { get, isMissingRoute } from "../api";
import { DataView, Notice, ScreenTitle, Unavailable } from "../components/ui";
import { FUTURE } from "../future";

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
