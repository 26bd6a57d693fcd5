//! `catchup`: one client resumes N events behind (default 1,000,000) with
//! `/ws?since=<id>` and reads until it reaches the head of the log: events
//! replayed per second.
//!
//! The log is filled first by simulator instances at a high rate with no
//! subscribers until N new events are committed; the instances are then
//! stopped (not deleted: deleting an instance deletes its events) so the
//! head stands still while the client replays. The head id is found through
//! `GET /events`. After the replay the scenario checks the connection goes
//! on live: a new event must follow.
//!
//! A server that ignores `since` sends nothing for the old events; the
//! scenario then says so instead of timing a replay that never happened.

use std::time::{Duration, Instant};

use crate::{
    cli::CatchupArgs,
    client::Pool,
    report::{per_sec, Report},
    scenario::{note_other_load, Ctx, Window},
    switchboard::{Admin, Instances},
    system::{self, Usage},
};

const PREFIX: &str = "bench-catchup";
/// An instance created and deleted after the replay, to see a live event.
const MARK: &str = "bench-catchup-mark";
/// How long the live event may take after the replay.
const LIVE_WAIT: Duration = Duration::from_secs(5);

pub async fn run(ctx: &Ctx, args: &CatchupArgs) -> anyhow::Result<Report> {
    let behind = ctx.pick(args.events, 5_000, 1_000_000);
    let prefill_instances = ctx.pick(args.prefill_instances, 2, 4);
    let prefill_rate = ctx.pick(args.prefill_rate, 5_000.0, 100_000.0);
    let mut report = ctx.report(
        "catchup",
        "Events per second replayed to one client resuming N events behind with /ws?since=<id>, then going live.",
    );
    report.setting("behind", behind);
    report.setting(
        "prefill",
        format!("{prefill_instances} instances × {prefill_rate}/s"),
    );
    report.setting("read_buffer", args.read_buffer);

    let admin = ctx.healthy_admin().await?;
    report.setting("database", admin.backend().await?);
    let mut instances = Instances::new(&admin);
    let outcome = replay(
        ctx,
        args,
        &admin,
        &mut instances,
        behind,
        prefill_instances,
        prefill_rate,
        &mut report,
    )
    .await;
    let cleanup = instances.delete_all().await;
    outcome?;
    cleanup?;
    Ok(report)
}

#[allow(clippy::too_many_arguments)]
async fn replay(
    ctx: &Ctx,
    args: &CatchupArgs,
    admin: &Admin,
    instances: &mut Instances,
    behind: u64,
    prefill_instances: usize,
    prefill_rate: f64,
    report: &mut Report,
) -> anyhow::Result<()> {
    // 1. Fill the log with `behind` new events.
    let head_before = admin.head_id().await?;
    let committed_before = admin.metrics().await?.committed;
    let fill_start = Instant::now();
    instances
        .create(PREFIX, prefill_instances, prefill_rate, ctx.common.seed)
        .await?;
    let mut last_progress = Instant::now();
    loop {
        let done = admin
            .metrics()
            .await?
            .committed
            .saturating_sub(committed_before);
        if done >= behind {
            break;
        }
        if !ctx.common.smoke && last_progress.elapsed() >= Duration::from_secs(5) {
            last_progress = Instant::now();
            eprintln!("  prefill: {done}/{behind} events committed");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    instances.stop_all().await?;
    let fill_seconds = fill_start.elapsed().as_secs_f64();
    let head = admin.head_id().await?;
    let since = (head - behind as i64).max(head_before);
    let expected = (head - since) as u64;
    report.setting("since", since);
    report.setting("head", head);
    report.note(format!(
        "prefill: {} events committed in {fill_seconds:.1} s ({}/s) with no subscribers",
        head - head_before,
        per_sec((head - head_before) as f64 / fill_seconds.max(1e-9))
    ));

    // 2. Resume from `since` and read to the head.
    let stats = ctx.stats();
    stats.set_target_id(head);
    let url = ctx.switchboard_url(&[("since", &since.to_string())])?;
    let mut config = ctx.client_config(url, 1)?;
    config.read_buffer = args.read_buffer;
    config.format.id_field = "id".into();
    config.progress = false;
    let server_start = ctx.sample_server();
    let client_start = system::sample(0).ok();
    let machine_start = system::machine_busy_us();
    let start = Instant::now();
    let pool = Pool::open(config, stats.clone()).await?;
    let connect = pool.connect.clone();
    let stall = Duration::from_secs_f64(args.stall_timeout.max(0.5));
    let mut last_count = 0;
    let mut last_change = Instant::now();
    while stats.target_reached().is_none() {
        tokio::time::sleep(Duration::from_millis(5)).await;
        let count = stats.snapshot().events;
        if count != last_count {
            last_count = count;
            last_change = Instant::now();
        } else if last_change.elapsed() >= stall || stats.snapshot().open == 0 {
            break;
        }
    }
    let reached = stats.target_reached();
    let server_end = ctx.sample_server();
    let client_end = system::sample(0).ok();
    let machine_end = system::machine_busy_us();
    let replayed = stats.snapshot().events;

    // 3. The connection must go on live after the replay.
    let mut live = false;
    if reached.is_some() {
        admin.create_simulator(MARK, 0.0, 1, 0).await?;
        admin.delete(MARK).await?;
        let deadline = Instant::now() + LIVE_WAIT;
        while Instant::now() < deadline {
            if stats.max_id().is_some_and(|id| id > head) {
                live = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
    let errors = stats.errors();
    pool.close().await;

    let seconds = reached.map(|at| at.duration_since(start).as_secs_f64());
    let rate = seconds.map(|s| replayed as f64 / s.max(1e-9));
    let server = server_start
        .zip(server_end)
        .map(|(a, b)| Usage::between(&a, &b));
    let client = client_start
        .zip(client_end)
        .map(|(a, b)| Usage::between(&a, &b));
    let others_cores = machine_start
        .zip(machine_end)
        .zip(seconds)
        .map(|((a, b), s)| {
            let ours = server.map_or(0, |u| u.cpu_us) + client.map_or(0, |u| u.cpu_us);
            b.saturating_sub(a).saturating_sub(ours) as f64 / 1e6 / s.max(1e-9)
        });
    let first = stats.first_id();
    let out_of_order = stats
        .out_of_order
        .load(std::sync::atomic::Ordering::Relaxed);

    report.columns = [
        "behind",
        "replayed",
        "seconds",
        "events/s",
        "first id",
        "out of order",
        "live after",
        "server cores",
        "server CPU/event",
        "client cores",
        "errors",
    ]
    .map(String::from)
    .to_vec();
    report.rows.push(vec![
        expected.to_string(),
        replayed.to_string(),
        seconds.map_or("-".into(), |s| format!("{s:.2}")),
        rate.map_or("-".into(), per_sec),
        first.map_or("-".into(), |f| f.to_string()),
        out_of_order.to_string(),
        if live { "yes".into() } else { "no".into() },
        server.map_or("-".into(), |u| format!("{:.2}", u.cores)),
        server
            .and_then(|u| u.cpu_us_per(replayed))
            .map_or("-".into(), |v| format!("{v:.2} µs")),
        client.map_or("-".into(), |u| format!("{:.2}", u.cores)),
        errors.describe(),
    ]);
    match rate {
        Some(rate) => report.summary(
            "replayed",
            format!(
                "{} events/s ({replayed} events in {:.2} s)",
                per_sec(rate),
                seconds.unwrap_or(0.0)
            ),
        ),
        None => report.summary("replayed", "did not reach the head"),
    }
    let unsupported = replayed == 0 && connect.connected == 1;
    if unsupported {
        report.summary(
            "verdict",
            format!(
                "the server sent none of the {expected} events after id {since} within {:.0} s of connecting with ?since={since}: it does not support `since` (resume) yet",
                stall.as_secs_f64()
            ),
        );
    }
    for sample in stats.error_samples() {
        report.note(sample);
    }
    report.check(connect.connected == 1, || {
        "the resuming client could not connect".into()
    });
    report.check(!unsupported, || format!("UNSUPPORTED: the server ignored ?since={since} (no replay): resume is not implemented yet"));
    report.check(unsupported || reached.is_some(), || {
        format!(
            "the replay stopped at id {} before the head {head} ({replayed} of {expected} events)",
            stats.max_id().unwrap_or(0)
        )
    });
    report.check(unsupported || first == Some(since + 1), || {
        format!(
            "the replay began at id {}, not at {} (the first id after since)",
            first.unwrap_or(0),
            since + 1
        )
    });
    report.check(out_of_order == 0, || {
        format!("{out_of_order} events arrived with an id not above the previous one")
    });
    report.check(
        unsupported || reached.is_none() || replayed == expected,
        || {
            format!(
                "{replayed} events arrived up to the head, expected {expected} (gap or duplicate)"
            )
        },
    );
    report.check(unsupported || reached.is_none() || live, || {
        "no live event arrived after the replay".into()
    });
    report.check(errors.total() == 0, || {
        format!("errors: {}", errors.describe())
    });
    let window = Window {
        seconds: seconds.unwrap_or(0.0),
        events: replayed,
        events_per_sec: rate.unwrap_or(0.0),
        bytes_per_event: 0.0,
        latency: Default::default(),
        untimed: 0,
        errors: errors.clone(),
        server,
        server_each: Vec::new(),
        client,
        others_cores,
        committed: None,
        committed_per_sec: None,
        batches: None,
        server_delivered: None,
        lagging: None,
        metrics_end: None,
    };
    note_other_load(report, [&window]);
    report.data = serde_json::json!({
        "since": since,
        "head": head,
        "expected": expected,
        "first_id": first,
        "out_of_order": out_of_order,
        "live_after_replay": live,
        "supported": !unsupported,
        "window": window,
    });
    Ok(())
}
