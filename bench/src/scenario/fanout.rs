//! `fanout`: S subscribers (default 1,000) watch the benchmark instances;
//! the total publish rate rises step by step until a step is no longer
//! sustained (p99 above the limit, fewer deliveries than committed events ×
//! subscribers, or errors). The answer is the highest sustained
//! deliveries/s and its latencies.

use std::time::Duration;

use crate::{
    cli::FanoutArgs,
    client::Pool,
    report::{per_sec, Report},
    scenario::{check_delivery, measure, note_other_load, secs, Ctx, Window},
    stats::human_us,
    switchboard::{instance_names, Instances},
};

const PREFIX: &str = "bench-fanout";
/// Pause after a step's instances are deleted, so its last events drain
/// before the next step warms up.
const SETTLE: Duration = Duration::from_secs(1);

pub async fn run(ctx: &Ctx, args: &FanoutArgs) -> anyhow::Result<Report> {
    let subscribers = ctx.pick(args.subscribers, 20, 1_000);
    let rates = ctx.pick(
        args.rates.clone(),
        vec![20.0, 50.0],
        vec![
            10.0, 25.0, 50.0, 75.0, 100.0, 150.0, 200.0, 300.0, 500.0, 750.0, 1000.0, 1500.0,
            2000.0,
        ],
    );
    let step = ctx.pick(args.step, 2.0, 5.0);
    let warmup = ctx.pick(args.warmup, 1.0, 2.0);
    let instances_per_step = args.instances.max(1);
    let mut report = ctx.report(
        "fanout",
        "Highest sustained deliveries/s to S subscribers as the publish rate rises until p99 passes the limit; every event is committed to the log before delivery.",
    );
    report.setting("subscribers", subscribers);
    report.setting("instances", instances_per_step);
    report.setting("step_s", step);
    report.setting("warmup_s", warmup);
    report.setting("p99_limit_ms", args.p99_limit_ms);
    report.setting("min_delivered", args.min_delivered);
    ctx.prepare_server_for(subscribers, &mut report);

    let admin = ctx.healthy_admin().await?;
    let url = ctx.switchboard_url(&[("instances", &instance_names(PREFIX, instances_per_step))])?;
    let stats = ctx.stats();
    // A filter may only name instances that exist: quiet ones stand in
    // until the first step creates them at its rate (the subscriptions of
    // the admin key keep the names across a delete and create).
    let mut instances = Instances::new(&admin);
    instances
        .create(PREFIX, instances_per_step, 0.0, ctx.common.seed)
        .await?;
    ctx.wait_subscribable(&url).await?;
    let pool = Pool::open(ctx.client_config(url, subscribers)?, stats.clone()).await?;
    let connect = pool.connect.clone();

    let mut windows: Vec<(f64, Window, bool)> = Vec::new();
    let outcome: anyhow::Result<()> = async {
        for &rate in &rates {
            instances.delete_all().await?;
            instances
                .create(
                    PREFIX,
                    instances_per_step,
                    rate / instances_per_step as f64,
                    ctx.common.seed,
                )
                .await?;
            tokio::time::sleep(secs(warmup)).await;
            let window = measure(ctx, &stats, Some(&admin), secs(step)).await;
            instances.delete_all().await?;
            let window = window?;
            let sustained = sustained(&window, subscribers, args.p99_limit_ms, args.min_delivered);
            if !ctx.common.smoke {
                eprintln!(
                    "  rate {rate}/s: {} deliveries/s, p99 {}{}",
                    per_sec(window.events_per_sec),
                    human_us(window.latency.p99_us),
                    if sustained { "" } else { " (not sustained)" }
                );
            }
            windows.push((rate, window, sustained));
            tokio::time::sleep(SETTLE).await;
            if !sustained && !ctx.common.smoke && !args.keep_going {
                break;
            }
        }
        Ok(())
    }
    .await;
    let cleanup = instances.delete_all().await;
    pool.close().await;
    outcome?;
    cleanup?;

    report.columns = [
        "publish/s",
        "committed/s",
        "deliveries/s",
        "delivered",
        "p50",
        "p90",
        "p99",
        "p99.9",
        "max",
        "server cores",
        "server CPU/delivery",
        "client cores",
        "errors",
        "sustained",
    ]
    .map(String::from)
    .to_vec();
    for (rate, w, ok) in &windows {
        let offered = w.committed.unwrap_or(0) * subscribers as u64;
        report.rows.push(vec![
            format!("{rate}"),
            w.committed_per_sec.map_or("-".into(), per_sec),
            per_sec(w.events_per_sec),
            if offered > 0 {
                format!("{:.1}%", 100.0 * w.events as f64 / offered as f64)
            } else {
                "-".into()
            },
            human_us(w.latency.p50_us),
            human_us(w.latency.p90_us),
            human_us(w.latency.p99_us),
            human_us(w.latency.p999_us),
            human_us(w.latency.max_us),
            w.server_cores_text(),
            w.server_us_per_event_text(),
            w.client_cores_text(),
            w.errors.describe(),
            if *ok { "yes".into() } else { "no".into() },
        ]);
    }
    let best = windows
        .iter()
        .filter(|(_, _, ok)| *ok)
        .max_by(|a, b| a.1.events_per_sec.total_cmp(&b.1.events_per_sec));
    match best {
        Some((rate, w, _)) => {
            report.summary(
                "highest sustained",
                format!(
                    "{} deliveries/s ({} events/s × {subscribers} subscribers), p50 {}, p99 {}, server {}",
                    per_sec(w.events_per_sec),
                    rate,
                    human_us(w.latency.p50_us),
                    human_us(w.latency.p99_us),
                    w.server_us_per_event_text()
                ),
            );
        }
        None => report.summary("highest sustained", "none of the steps"),
    }
    report.summary(
        "connect",
        format!(
            "{}/{} in {:.2} s ({:.0}/s)",
            connect.connected, connect.attempted, connect.seconds, connect.per_sec
        ),
    );
    if windows
        .iter()
        .any(|(_, w, _)| w.client.is_some_and(|c| c.cores > 0.9))
    {
        report.note("the client used over 0.9 of a core in some steps: there the tool, not the server, may be the limit");
    }
    for sample in stats.error_samples() {
        report.note(sample);
    }
    let connect_errors = connect.failed + connect.timed_out;
    for (i, (_, w, _)) in windows.iter().enumerate() {
        check_delivery(&mut report, w, if i == 0 { connect_errors } else { 0 });
    }
    report.check(!windows.is_empty(), || "no step ran".into());
    note_other_load(&mut report, windows.iter().map(|(_, w, _)| w));
    report.data = serde_json::json!({
        "connect": connect,
        "steps": windows.iter().map(|(rate, w, ok)| serde_json::json!({"rate": rate, "sustained": ok, "window": w})).collect::<Vec<_>>(),
    });
    Ok(report)
}

/// Whether a step kept up: p99 within the limit, enough of the committed
/// events reached every subscriber, and nothing failed.
fn sustained(w: &Window, subscribers: usize, p99_limit_ms: f64, min_delivered: f64) -> bool {
    let offered = w.committed.unwrap_or(0) as f64 * subscribers as f64;
    let delivered_ok = offered > 0.0 && w.events as f64 >= min_delivered * offered;
    delivered_ok && (w.latency.p99_us as f64) <= p99_limit_ms * 1000.0 && w.errors.total() == 0
}
