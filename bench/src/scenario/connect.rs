//! `connect`: the generic client on its own. C connections to any URL,
//! a warm-up, one measured window. It publishes nothing: point it at a
//! server that already has traffic (or start a publisher beside it).

use crate::{
    cli::ConnectArgs,
    client::{with_query, Pool},
    report::{per_sec, Report},
    scenario::{check_delivery, measure, note_other_load, secs, Ctx},
    stats::human_us,
    switchboard::Instances,
};

/// The publishing instance, when `--publish-rate` asks for one.
const PREFIX: &str = "bench-connect";

pub async fn run(ctx: &Ctx, args: &ConnectArgs) -> anyhow::Result<Report> {
    let connections = ctx.pick(args.connections, 20, 1_000);
    let duration = ctx.pick(args.duration, 3.0, 10.0);
    let warmup = ctx.pick(args.warmup, 1.0, 2.0);
    let mut report = ctx.report(
        "connect",
        "Generic client: events/s delivered to C connections to one URL and the end-to-end latency (receive time minus the event's timestamp).",
    );
    report.setting("url", ctx.subscribe_url());
    report.setting("connections", connections);
    report.setting("duration_s", duration);
    ctx.prepare_server_for(connections, &mut report);

    let url = match &ctx.common.key {
        Some(key) => with_query(ctx.subscribe_url(), &[("apikey", key)]),
        None => ctx.subscribe_url().to_string(),
    };
    let stats = ctx.stats();
    let pool = Pool::open(ctx.client_config(url, connections)?, stats.clone()).await?;
    let connect = pool.connect.clone();
    let admin = match args.publish_rate {
        Some(_) => Some(ctx.admin()?),
        None => None,
    };
    let mut instances = admin.as_ref().map(Instances::new);
    let outcome = async {
        if let (Some(instances), Some(rate)) = (instances.as_mut(), args.publish_rate) {
            report.setting("publish_per_s", rate);
            instances.create(PREFIX, 1, rate, ctx.common.seed).await?;
        }
        tokio::time::sleep(secs(warmup)).await;
        measure(ctx, &stats, admin.as_ref(), secs(duration)).await
    }
    .await;
    let cleanup = match instances.as_mut() {
        Some(instances) => instances.delete_all().await,
        None => Ok(()),
    };
    pool.close().await;
    let window = outcome?;
    cleanup?;

    report.columns = [
        "connections",
        "connect/s",
        "events/s",
        "p50",
        "p90",
        "p99",
        "p99.9",
        "max",
        "server CPU/event",
        "errors",
    ]
    .map(String::from)
    .to_vec();
    let lat = window.latency;
    report.rows.push(vec![
        format!("{}/{}", connect.connected, connect.attempted),
        format!("{:.0}", connect.per_sec),
        per_sec(window.events_per_sec),
        human_us(lat.p50_us),
        human_us(lat.p90_us),
        human_us(lat.p99_us),
        human_us(lat.p999_us),
        human_us(lat.max_us),
        window.server_us_per_event_text(),
        window.errors.describe(),
    ]);
    report.summary("delivered", format!("{}/s", per_sec(window.events_per_sec)));
    report.summary("time to connect all", format!("{:.2} s", connect.seconds));
    for sample in stats.error_samples() {
        report.note(sample);
    }
    check_delivery(&mut report, &window, connect.failed + connect.timed_out);
    note_other_load(&mut report, [&window]);
    report.data = serde_json::json!({ "connect": connect, "window": window });
    Ok(report)
}
