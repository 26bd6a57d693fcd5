//! `slow`: S subscribers (default 1,000) at a fixed publish rate; after a
//! first measured window, a share of them (default 10%) stop reading while
//! keeping their sockets open, and a second window measures the others.
//! The result is the readers' p99 with and without the stalled clients (one
//! run, the same connections, so nothing else changes between the two).

use std::time::Duration;

use crate::{
    cli::SlowArgs,
    client::{Phase, Pool},
    report::{per_sec, Report},
    scenario::{check_delivery, measure, note_other_load, secs, Ctx, Window},
    stats::human_us,
    switchboard::{instance_names, Instances},
};

const PREFIX: &str = "bench-slow";

pub async fn run(ctx: &Ctx, args: &SlowArgs) -> anyhow::Result<Report> {
    let subscribers = ctx.pick(args.subscribers, 50, 1_000);
    let rate = ctx.pick(args.rate, 20.0, 100.0);
    let duration = ctx.pick(args.duration, 2.0, 10.0);
    let warmup = ctx.pick(args.warmup, 1.0, 3.0);
    let fill = ctx.pick(args.fill, 1.0, 60.0);
    let n = args.instances.max(1);
    let percent = args.stalled_percent.clamp(0.1, 100.0);
    // Every k-th connection stalls: 10% → every 10th.
    let every = (100.0 / percent).round().max(1.0) as usize;
    let stalled = subscribers.div_ceil(every);
    let readers = subscribers - stalled;
    let mut report = ctx.report(
        "slow",
        "The p99 of subscribers that keep reading, before and after a share of the others stop reading.",
    );
    report.setting("subscribers", subscribers);
    report.setting("stalled", format!("{stalled} (every {every}th)"));
    report.setting("publish_per_s", rate);
    report.setting("duration_s", duration);
    report.setting("warmup_s", warmup);
    report.setting("fill_s", fill);
    report.setting("stall_rcvbuf", args.stall_rcvbuf);
    ctx.prepare_server_for(subscribers, &mut report);

    let admin = ctx.healthy_admin().await?;
    let url = ctx.switchboard_url(&[("instances", &instance_names(PREFIX, n))])?;
    let stats = ctx.stats();
    let mut config = ctx.client_config(url, subscribers)?;
    config.stall_every = Some(every);
    config.stall_rcvbuf = Some(args.stall_rcvbuf).filter(|b| *b > 0);
    // The instances first: a filter may only name instances that exist.
    let mut instances = Instances::new(&admin);
    instances
        .create(PREFIX, n, rate / n as f64, ctx.common.seed)
        .await?;
    ctx.wait_subscribable(&config.url).await?;
    let pool = Pool::open(config, stats.clone()).await?;
    let connect = pool.connect.clone();
    let outcome: anyhow::Result<(Window, Window, f64, u64)> = async {
        tokio::time::sleep(secs(warmup)).await;
        let before = measure(ctx, &stats, Some(&admin), secs(duration)).await?;
        pool.set(Phase::Stall);
        // Let the stalled sockets and the server's queues for them fill,
        // until the server cuts every stalled client off or `fill` runs out.
        let lagging_start = admin.metrics().await?.lagging_total;
        let fill_start = std::time::Instant::now();
        let mut cut = 0;
        while fill_start.elapsed() < secs(fill) {
            tokio::time::sleep(Duration::from_millis(250)).await;
            cut = admin
                .metrics()
                .await?
                .lagging_total
                .saturating_sub(lagging_start);
            if cut >= stalled as u64 {
                break;
            }
        }
        let filled = fill_start.elapsed().as_secs_f64();
        let after = measure(ctx, &stats, Some(&admin), secs(duration)).await?;
        Ok((before, after, filled, cut))
    }
    .await;
    let cleanup = instances.delete_all().await;
    pool.close().await;
    let (before, after, filled, cut) = outcome?;
    cleanup?;

    report.columns = [
        "window",
        "readers",
        "deliveries/s",
        "delivered",
        "p50",
        "p90",
        "p99",
        "p99.9",
        "max",
        "server cores",
        "server RSS",
        "lagging cut off",
        "errors",
    ]
    .map(String::from)
    .to_vec();
    for (name, w, count) in [
        ("all reading", &before, subscribers),
        ("10% stalled", &after, readers),
    ] {
        let name = if name == "10% stalled" {
            format!("{percent}% stalled")
        } else {
            name.to_string()
        };
        let offered = w.committed.unwrap_or(0) * count as u64;
        report.rows.push(vec![
            name,
            count.to_string(),
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
            w.server.map_or("-".into(), |u| {
                format!("{:.1} MiB", u.rss_end_kib as f64 / 1024.0)
            }),
            w.lagging.map_or("-".into(), |l| l.to_string()),
            w.errors.describe(),
        ]);
    }
    let change = if before.latency.p99_us > 0 {
        Some(
            100.0 * (after.latency.p99_us as f64 - before.latency.p99_us as f64)
                / before.latency.p99_us as f64,
        )
    } else {
        None
    };
    report.summary(
        "readers' p99",
        format!(
            "{} with every client reading, {} with {stalled} stalled: {}",
            human_us(before.latency.p99_us),
            human_us(after.latency.p99_us),
            change.map_or("-".into(), |c| format!("{c:+.1}%"))
        ),
    );
    report.summary(
        "stalled clients cut off by the server",
        format!("{cut} of {stalled} within {filled:.1} s of stalling (before the second window)"),
    );
    report.note("the stalled clients read nothing, so they are not in the latencies; the server sees their sockets fill and may cut them off (lagging)");
    for sample in stats.error_samples() {
        report.note(sample);
    }
    let connect_errors = connect.failed + connect.timed_out;
    check_delivery(&mut report, &before, connect_errors);
    check_delivery(&mut report, &after, 0);
    note_other_load(&mut report, [&before, &after]);
    report.data = serde_json::json!({
        "connect": connect,
        "stalled": stalled,
        "readers": readers,
        "p99_change_percent": change,
        "stalled_cut_off_before_second_window": cut,
        "fill_seconds": filled,
        "before": before,
        "after": after,
    });
    Ok(report)
}
