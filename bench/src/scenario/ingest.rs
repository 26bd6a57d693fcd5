//! `ingest`: durable ingest with no subscribers. Simulator instances asked
//! for far more events than the server can commit (the simulator waits for
//! its commits, so the log writer sets the pace); the server's `/metrics`
//! give events committed per second and the batch sizes the writer used.

use crate::{
    cli::IngestArgs,
    report::{per_sec, Report},
    scenario::{measure, note_other_load, secs, Ctx},
    switchboard::Instances,
};

const PREFIX: &str = "bench-ingest";

pub async fn run(ctx: &Ctx, args: &IngestArgs) -> anyhow::Result<Report> {
    let n = ctx.pick(args.instances, 2, 4);
    let rate = ctx.pick(args.rate, 2_000.0, 100_000.0);
    let duration = ctx.pick(args.duration, 3.0, 10.0);
    let warmup = ctx.pick(args.warmup, 1.0, 3.0);
    let mut report = ctx.report(
        "ingest",
        "Events committed to the durable log per second with no subscribers, and the batch sizes of the log writer.",
    );
    let admin = ctx.healthy_admin().await?;
    let backend = admin.backend().await?;
    report.setting("database", &backend);
    report.setting("instances", n);
    report.setting("asked_per_instance_per_s", rate);
    report.setting("duration_s", duration);
    report.setting("warmup_s", warmup);

    let stats = ctx.stats();
    let mut instances = Instances::new(&admin);
    let outcome = async {
        instances.create(PREFIX, n, rate, ctx.common.seed).await?;
        tokio::time::sleep(secs(warmup)).await;
        measure(ctx, &stats, Some(&admin), secs(duration)).await
    }
    .await;
    let cleanup = instances.delete_all().await;
    let window = outcome?;
    cleanup?;

    let committed = window.committed.unwrap_or(0);
    let batches = window.batches.unwrap_or(0);
    let average = if batches > 0 {
        committed as f64 / batches as f64
    } else {
        0.0
    };
    let largest = window.metrics_end.map_or(0, |m| m.largest_batch);
    let server_us = window.server.and_then(|u| u.cpu_us_per(committed));
    report.columns = [
        "database",
        "asked/s",
        "committed/s",
        "batches/s",
        "average batch",
        "largest batch",
        "server cores",
        "server CPU/event",
    ]
    .map(String::from)
    .to_vec();
    report.rows.push(vec![
        backend.clone(),
        per_sec(rate * n as f64),
        window.committed_per_sec.map_or("-".into(), per_sec),
        per_sec(batches as f64 / window.seconds.max(1e-9)),
        format!("{average:.1}"),
        largest.to_string(),
        window.server_cores_text(),
        server_us.map_or("-".into(), |v| format!("{v:.1} µs")),
    ]);
    report.summary(
        "committed",
        format!(
            "{} events/s on {backend}",
            window.committed_per_sec.map_or("-".into(), per_sec)
        ),
    );
    report.summary(
        "batches",
        format!(
            "average {average:.1} events, largest {largest} (largest since the server started)"
        ),
    );
    report.check(committed > 0, || "nothing was committed".into());
    report.check(batches > 0, || "the writer reported no batches".into());
    note_other_load(&mut report, [&window]);
    report.data = serde_json::json!({
        "database": backend,
        "asked_per_sec": rate * n as f64,
        "average_batch": average,
        "largest_batch": largest,
        "server_cpu_us_per_event": server_us,
        "window": window,
    });
    Ok(report)
}
