//! `idle`: open N connections (default 50,000) that receive nothing, hold
//! them, and report the server's RSS per connection and the time to connect
//! them all. A WebSocket ping on every connection at the end proves they
//! are all still alive (any server answers pings).

use std::time::Duration;

use crate::{
    cli::IdleArgs,
    client::Pool,
    report::Report,
    scenario::{secs, Ctx},
    switchboard::Instances,
    system,
};

/// An instance that makes no traffic (a virtual modem at rate 0), watched
/// for an event kind it never makes: the connections are truly idle. A
/// filter must name an instance that exists.
const QUIET: &str = "bench-idle";
/// How long the pongs may take to come back from every connection.
const PONG_WAIT: Duration = Duration::from_secs(30);

pub async fn run(ctx: &Ctx, args: &IdleArgs) -> anyhow::Result<Report> {
    let connections = ctx.pick(args.connections, 500, 50_000);
    let hold = ctx.pick(args.hold, 1.0, 5.0);
    let mut report = ctx.report(
        "idle",
        "Server memory per idle WebSocket connection and the time to connect them all.",
    );
    report.setting("connections", connections);
    report.setting("hold_s", hold);
    report.setting("connect_concurrency", ctx.common.connect_concurrency);
    ctx.prepare_server_for(connections, &mut report);

    // With a key, filter to a quiet instance's location events: truly idle.
    let (admin, url) = match &ctx.common.key {
        Some(_) => (
            Some(ctx.healthy_admin().await?),
            ctx.switchboard_url(&[("instances", QUIET), ("events", "location")])?,
        ),
        None => (None, ctx.subscribe_url().to_string()),
    };
    let mut quiet = None;
    if let Some(admin) = &admin {
        let mut instances = Instances::new(admin);
        instances.create_named(QUIET, 0.0, ctx.common.seed).await?;
        quiet = Some(instances);
    }
    let server_before = ctx.sample_server();
    let client_before = system::sample(0).ok();
    let stats = ctx.stats();
    if quiet.is_some() {
        ctx.wait_subscribable(&url).await?;
    }
    let mut pool = Pool::open(ctx.client_config(url, connections)?, stats.clone()).await?;
    let connect = pool.connect.clone();
    let after_connect = stats.snapshot();
    tokio::time::sleep(secs(hold)).await;
    let server_after = ctx.sample_server();
    let client_after = system::sample(0).ok();
    let server_connections = match &admin {
        Some(admin) => Some(admin.metrics().await?.connections),
        None => None,
    };
    let open = stats.snapshot().open;
    let pongs = pool.ping_all(PONG_WAIT).await;
    let errors = stats.snapshot().errors_since(&after_connect);
    pool.close().await;
    if let Some(mut quiet) = quiet {
        quiet.delete_all().await?;
    }

    let per_conn = |before: Option<system::ProcSample>, after: Option<system::ProcSample>| {
        before.zip(after).and_then(|(b, a)| {
            (connect.connected > 0)
                .then(|| (a.rss_kib as f64 - b.rss_kib as f64) / connect.connected as f64)
        })
    };
    let server_per_conn = per_conn(server_before, server_after);
    let client_per_conn = per_conn(client_before, client_after);
    let kib = |v: Option<f64>| v.map_or("-".into(), |v| format!("{v:.2} KiB"));
    report.columns = [
        "connections",
        "open",
        "time to connect all",
        "connect/s",
        "server RSS before",
        "server RSS after",
        "server RSS/conn",
        "tool RSS/conn",
        "pongs",
        "errors",
    ]
    .map(String::from)
    .to_vec();
    report.rows.push(vec![
        connections.to_string(),
        format!(
            "{open}{}",
            server_connections.map_or(String::new(), |c| format!(" (server: {c})"))
        ),
        format!("{:.2} s", connect.seconds),
        format!("{:.0}", connect.per_sec),
        server_before.map_or("-".into(), |s| {
            format!("{:.1} MiB", s.rss_kib as f64 / 1024.0)
        }),
        server_after.map_or("-".into(), |s| {
            format!("{:.1} MiB", s.rss_kib as f64 / 1024.0)
        }),
        kib(server_per_conn),
        kib(client_per_conn),
        pongs.to_string(),
        errors.describe(),
    ]);
    report.summary("server RSS per connection", kib(server_per_conn));
    report.summary(
        "time to connect all",
        format!(
            "{:.2} s ({:.0} connections/s, {} source addresses)",
            connect.seconds, connect.per_sec, connect.source_addrs
        ),
    );
    if server_per_conn.is_none() {
        report.note("no server pid (--server-pid or --spawn): RSS per connection not measured");
    }
    for sample in stats.error_samples() {
        report.note(sample);
    }
    let failed = connect.failed + connect.timed_out;
    report.check(failed == 0, || {
        format!("{failed} of {connections} connections failed to open")
    });
    report.check(open == connect.connected, || {
        format!(
            "only {open} of {} connections were still open after the hold",
            connect.connected
        )
    });
    report.check(pongs >= connect.connected, || {
        format!(
            "only {pongs} of {} connections answered a ping",
            connect.connected
        )
    });
    report.check(errors.total() == 0, || {
        format!("errors while holding: {}", errors.describe())
    });
    report.data = serde_json::json!({
        "connect": connect,
        "open": open,
        "server_connections": server_connections,
        "pongs": pongs,
        "server_rss_before_kib": server_before.map(|s| s.rss_kib),
        "server_rss_after_kib": server_after.map(|s| s.rss_kib),
        "server_rss_per_connection_kib": server_per_conn,
        "tool_rss_per_connection_kib": client_per_conn,
        "errors": errors,
    });
    Ok(report)
}
