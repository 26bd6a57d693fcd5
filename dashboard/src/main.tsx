// The dashboard: sign in, then the screens, each reached by a hash route.
import { render } from "preact";
import { useEffect, useState } from "preact/hooks";
import { ScreenTitle } from "./components/ui";
import { href, useRoute } from "./router";
import { Create } from "./screens/Create";
import { Events } from "./screens/Events";
import { Cluster } from "./screens/Cluster";
import { Pools } from "./screens/Pools";
import { Instance } from "./screens/Instance";
import { Instances } from "./screens/Instances";
import { Message, Messages } from "./screens/Messages";
import { Metrics } from "./screens/Metrics";
import { Send } from "./screens/Send";
import { SignIn } from "./screens/SignIn";
import { resume, session, signOut } from "./session";
import { feedStatus, startSession, stopSession } from "./state";
import { useStore } from "./store";
import "./style.css";

const NAV: { route: string; label: string; admin?: boolean }[] = [
  { route: "instances", label: "Instances" },
  { route: "events", label: "Events" },
  { route: "send", label: "Send" },
  { route: "messages", label: "Messages" },
  { route: "metrics", label: "Metrics", admin: true },
  { route: "cluster", label: "Cluster" },
  { route: "pools", label: "Pools" },
];

/** Which nav entry a route belongs to. */
const SECTION: Record<string, string> = { instance: "instances", create: "instances", message: "messages" };

function Screen(props: { route: string[] }) {
  const [name, a, b] = props.route;
  switch (name ?? "instances") {
    case "instances":
      return <Instances />;
    case "create":
      return <Create />;
    case "instance":
      return <Instance key={a} name={a ?? ""} />;
    case "events":
      return <Events key={a} instance={a} />;
    case "send":
      return <Send instance={a} />;
    case "metrics":
      return <Metrics />;
    case "cluster":
      return <Cluster />;
    case "pools":
      return <Pools />;
    case "messages":
      return <Messages key={a} instance={a} />;
    case "message":
      return <Message key={`${a}/${b}`} instance={a ?? ""} id={b ?? ""} />;
    default:
      return (
        <main id="main">
          <ScreenTitle>Not found</ScreenTitle>
          <p>
            There is no screen here. <a href={href("instances")}>Instances</a>
          </p>
        </main>
      );
  }
}

function Shell() {
  const who = useStore(session)!;
  const route = useRoute();
  const feed = useStore(feedStatus);
  useEffect(() => {
    startSession();
    return stopSession;
  }, []);
  const here = SECTION[route[0]] ?? route[0] ?? "instances";
  return (
    <>
      <a class="skip" href="#main" onClick={(e) => (e.preventDefault(), document.querySelector<HTMLElement>("main h1")?.focus())}>
        Skip to content
      </a>
      <header class="top">
        <a class="brand" href={href("instances")}>
          switchboard
        </a>
        <nav aria-label="Screens">
          <ul>
            {NAV.filter((n) => !n.admin || who.role === "admin").map((n) => (
              <li>
                <a href={href(n.route)} aria-current={here === n.route ? "page" : undefined}>
                  {n.label}
                </a>
              </li>
            ))}
          </ul>
        </nav>
        <div class="who">
          <span class={`dot dot-${feed.status}`} title={`live updates: ${feed.status}`} aria-hidden="true" />
          <span data-testid="role">
            {who.role === "admin" ? "admin" : `instance ${(who.instances as string[]).join(", ")}`}
          </span>
          <button type="button" onClick={signOut}>
            Sign out
          </button>
        </div>
      </header>
      <Screen route={route} />
    </>
  );
}

function App() {
  const who = useStore(session);
  const [ready, setReady] = useState(false);
  useEffect(() => {
    void resume().finally(() => setReady(true));
  }, []);
  if (!ready) return <p class="loading">Loading…</p>;
  return who ? <Shell key={who.role + String(who.instances)} /> : <SignIn />;
}

render(<App />, document.getElementById("app")!);
