//! `subscribers`: many subscribers (default 10,000) at a modest publish
//! rate (default 100 events/s): latency percentiles and the server's CPU
//! time per delivery.

use crate::{
    cli::SubscribersArgs,
    client::Pool,
    report::{per_sec, Report},
    scenario::{check_delivery, measure, note_other_load, secs, Ctx},
    stats::human_us,
    switchboard::{instance_names, Instances},
};

const PREFIX: &str = "bench-subs";

pub async fn run(ctx: &Ctx, args: &SubscribersArgs) -> anyhow::Result<Report> {
    let subscribers = ctx.pick(args.subscribers, 200, 10_000);
    let rate = ctx.pick(args.rate, 20.0, 100.0);
    let duration = ctx.pick(args.duration, 3.0, 10.0);
    let warmup = ctx.pick(args.warmup, 1.0, 3.0);
    let n = args.instances.max(1);
    let mut report = ctx.report(
        "subscribers",
        "Latency and server CPU per delivery with many subscribers at a fixed publish rate.",
    );
    report.setting("subscribers", subscribers);
    report.setting("publish_per_s", rate);
    report.setting("instances", n);
    report.setting("duration_s", duration);
    report.setting("warmup_s", warmup);
    ctx.prepare_server_for(subscribers, &mut report);

    let admin = ctx.healthy_admin().await?;
    let url = ctx.switchboard_url(&[("instances", &instance_names(PREFIX, n))])?;
    let stats = ctx.stats();
    // The instances first: a filter may only name instances that exist.
    let mut instances = Instances::new(&admin);
    instances
        .create(PREFIX, n, rate / n as f64, ctx.common.seed)
        .await?;
    ctx.wait_subscribable(&url).await?;
    let pool = Pool::open(ctx.client_config(url, subscribers)?, stats.clone()).await?;
    let connect = pool.connect.clone();
    let outcome = async {
        tokio::time::sleep(secs(warmup)).await;
        measure(ctx, &stats, Some(&admin), secs(duration)).await
    }
    .await;
    let cleanup = instances.delete_all().await;
    pool.close().await;
    let window = outcome?;
    cleanup?;

    let offered = window.committed.unwrap_or(0) * subscribers as u64;
    let lat = window.latency;
    report.columns = [
        "subscribers",
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
    ]
    .map(String::from)
    .to_vec();
    report.rows.push(vec![
        subscribers.to_string(),
        window.committed_per_sec.map_or("-".into(), per_sec),
        per_sec(window.events_per_sec),
        if offered > 0 {
            format!("{:.1}%", 100.0 * window.events as f64 / offered as f64)
        } else {
            "-".into()
        },
        human_us(lat.p50_us),
        human_us(lat.p90_us),
        human_us(lat.p99_us),
        human_us(lat.p999_us),
        human_us(lat.max_us),
        window.server_cores_text(),
        window.server_us_per_event_text(),
        window.client_cores_text(),
        window.errors.describe(),
    ]);
    report.summary(
        "latency",
        format!("p50 {}, p99 {}", human_us(lat.p50_us), human_us(lat.p99_us)),
    );
    report.summary("server CPU per delivery", window.server_us_per_event_text());
    report.summary(
        "connect",
        format!(
            "{}/{} in {:.2} s ({:.0}/s)",
            connect.connected, connect.attempted, connect.seconds, connect.per_sec
        ),
    );
    if offered > 0 && (window.events as f64) < 0.95 * offered as f64 {
        report.note(format!(
            "only {:.1}% of committed events × subscribers arrived: the server (or the client) did not keep up",
            100.0 * window.events as f64 / offered as f64
        ));
    }
    if window.client.is_some_and(|c| c.cores > 0.9) {
        report.note("the client used over 0.9 of a core: the tool may be the limit");
    }
    for sample in stats.error_samples() {
        report.note(sample);
    }
    check_delivery(&mut report, &window, connect.failed + connect.timed_out);
    note_other_load(&mut report, [&window]);
    report.data = serde_json::json!({ "connect": connect, "window": window });
    Ok(report)
}
