// The server's /metrics as small charts over the last two minutes.
import { Notice, ScreenTitle, Sparkline } from "../components/ui";
import { gauge, rates } from "../metrics";
import { session } from "../session";
import { metrics, metricsError } from "../state";
import { useStore } from "../store";

export function Metrics() {
  const who = useStore(session);
  const samples = useStore(metrics);
  const error = useStore(metricsError);
  if (who?.role !== "admin") {
    return (
      <main id="main">
        <ScreenTitle>Metrics</ScreenTitle>
        <Notice kind="info">The server's metrics cover every instance: they are shown to the admin key only.</Notice>
      </main>
    );
  }
  const latest = samples[samples.length - 1]?.values;
  return (
    <main id="main">
      <ScreenTitle>Metrics</ScreenTitle>
      <p class="muted">From /metrics every two seconds, over the last two minutes.</p>
      {error && <Notice kind="error">Could not read /metrics: {error}</Notice>}
      <div class="charts">
        <Sparkline label="Events committed" unit="/s" values={rates(samples, "switchboard_events_committed_total")} />
        <Sparkline label="Open streams" unit="" values={gauge(samples, "switchboard_connections")} />
        <Sparkline label="Webhook backlog" unit="events" values={gauge(samples, "switchboard_webhook_backlog")} />
        <Sparkline label="Frames delivered" unit="/s" values={rates(samples, "switchboard_frames_delivered_total")} />
        <Sparkline label="Webhook failures" unit="/s" values={rates(samples, "switchboard_webhook_failures_total")} />
        <Sparkline label="Queued bytes" unit="B" values={gauge(samples, "switchboard_queued_bytes")} />
      </div>
      {latest && (
        <p class="muted small">
          {latest.get("switchboard_instances") ?? 0} instances · {latest.get("switchboard_events_committed_total") ?? 0} events
          committed since start · {latest.get("switchboard_webhook_deliveries_total") ?? 0} webhook deliveries
        </p>
      )}
    </main>
  );
}
