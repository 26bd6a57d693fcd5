// What every screen shares while someone is signed in: the instances they
// may see (with each one's latest connection figures), one live feed that
// keeps them current, the delivery statuses of recent messages, and the
// server's metrics over the last minutes.
import {
  findHead,
  get,
  latestConnections,
  type ConnectionData,
  type Envelope,
  type InstanceView,
} from "./api";
import { parseMetrics } from "./metrics";
import { session } from "./session";
import { Store } from "./store";
import { EventStream, type StreamStatus } from "./stream";

export interface InstanceRow {
  view: InstanceView;
  /** From the latest `connection` event, when one is known. */
  connection?: ConnectionData;
  connectionAt?: string;
}

export const instances = new Store<Map<string, InstanceRow>>(new Map());
export const instancesError = new Store<string>("");
export const feedStatus = new Store<{ status: StreamStatus; detail?: string }>({ status: "stopped" });

export interface DeliveryStep {
  status: string;
  at: string;
  error?: string;
  eventId: number;
}

/** Delivery events by message id; a message sent from the dashboard looks
 * its progress up here, including steps that arrived before the send's
 * answer did. Bounded: the oldest messages are forgotten first. */
export const deliveries = new Store<Map<string, DeliveryStep[]>>(new Map());
const MAX_TRACKED_MESSAGES = 2000;

/** The newest event id the feed has seen: a good hint for findHead. */
export let newestSeen = 0;

let feed: EventStream | null = null;
/** Counts sign-ins, so a feed started for an ended session is not kept. */
let sessions = 0;

function onFeedEvent(event: Envelope): void {
  newestSeen = Math.max(newestSeen, event.id);
  if (event.event === "connection") {
    const data = event.data as unknown as ConnectionData;
    const row = instances.value.get(event.instance);
    if (row) {
      const next = new Map(instances.value);
      const status = (["connecting", "open", "close"].includes(data.status) ? data.status : row.view.status) as InstanceView["status"];
      next.set(event.instance, {
        view: { ...row.view, status },
        // A state change without figures keeps the last known figures.
        connection: { ...data, info: { ...row.connection?.info, ...data.info } },
        connectionAt: event.timestamp,
      });
      instances.set(next);
    }
  } else if (event.event === "delivery") {
    const data = event.data as { id?: string; status?: string; error?: string };
    if (!data.id || !data.status) return;
    const next = new Map(deliveries.value);
    const steps = next.get(data.id) ?? [];
    next.delete(data.id);
    next.set(data.id, [...steps, { status: data.status, at: event.timestamp, error: data.error, eventId: event.id }]);
    while (next.size > MAX_TRACKED_MESSAGES) next.delete(next.keys().next().value as string);
    deliveries.set(next);
  } else if (event.event === "instance") {
    void loadInstances();
  }
}

/** Reads the instance list, and each one's latest connection figures. */
export async function loadInstances(): Promise<void> {
  try {
    const list = await get<{ instance: InstanceView }[]>("/instance/fetchInstances");
    const old = instances.value;
    const next = new Map<string, InstanceRow>();
    for (const { instance } of list) {
      const known = old.get(instance.instanceName);
      next.set(instance.instanceName, { ...known, view: instance });
    }
    instances.set(next);
    instancesError.set("");
    const unknown = [...next.values()].filter((r) => !r.connection).map((r) => r.view.instanceName);
    if (unknown.length) {
      const latest = await latestConnections(unknown, await findHead(newestSeen));
      const merged = new Map(instances.value);
      for (const [name, event] of latest) {
        const row = merged.get(name);
        if (row && !row.connection) {
          merged.set(name, { ...row, connection: event.data as unknown as ConnectionData, connectionAt: event.timestamp });
        }
      }
      instances.set(merged);
    }
  } catch (err) {
    instancesError.set((err as Error).message);
  }
}

export interface MetricSample {
  at: number;
  values: Map<string, number>;
}

/** Two minutes of /metrics, one sample every two seconds. */
export const metrics = new Store<MetricSample[]>([]);
export const metricsError = new Store<string>("");
const METRIC_SAMPLES = 60;
const METRICS_EVERY_MS = 2000;
let metricsTimer: ReturnType<typeof setInterval> | undefined;

async function sampleMetrics(): Promise<void> {
  try {
    const response = await fetch("/metrics", { cache: "no-store", credentials: "omit" });
    if (!response.ok) throw new Error(`/metrics answered ${response.status}`);
    const values = parseMetrics(await response.text());
    metrics.update((samples) => [...samples, { at: Date.now(), values }].slice(-METRIC_SAMPLES));
    metricsError.set("");
  } catch (err) {
    metricsError.set((err as Error).message);
  }
}

/** Starts what a signed-in tab keeps running. */
export function startSession(): void {
  stopSession();
  const admin = session.value?.role === "admin";
  const generation = ++sessions;
  // The feed starts at the log's end rather than "from now", so even its
  // first reconnect resumes with `since` and no state change is missed.
  void findHead()
    .catch(() => null)
    .then((head) => {
      if (generation !== sessions) return;
      feed = new EventStream({
        since: head,
        events: admin ? ["connection", "delivery", "instance"] : ["connection", "delivery"],
        onEvent: onFeedEvent,
        onStatus: (status, detail) => feedStatus.set({ status, detail }),
      });
      feed.start();
    });
  void loadInstances();
  // Server-wide figures are for the admin; an instance key sees only its own.
  if (admin) {
    void sampleMetrics();
    metricsTimer = setInterval(() => void sampleMetrics(), METRICS_EVERY_MS);
  }
}

export function stopSession(): void {
  sessions += 1;
  feed?.stop();
  feed = null;
  clearInterval(metricsTimer);
  metrics.set([]);
  instances.set(new Map());
  deliveries.set(new Map());
  newestSeen = 0;
}
