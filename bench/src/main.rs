//! The `switchboard-bench` binary: parse the command line, set up the
//! process (open-files limit, the server if it is to be spawned, CPU
//! pinning), run one scenario on an async runtime, print its report and
//! exit non-zero when a smoke check failed.

use std::{io::Write, process::ExitCode};

use anyhow::Context;
use clap::Parser;
use switchboard_bench::{
    cli::{Cli, Scenario},
    report::Report,
    scenario::{self, Ctx},
    system::{self, ServerProcess},
};

/// Open files the tool asks for: enough for the largest scenario with room
/// to spare (each connection is one descriptor).
const WANTED_OPEN_FILES: u64 = 262_144;

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(report) => {
            if report.passed() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            }
        }
        Err(err) => {
            eprintln!("switchboard-bench: {err:#}");
            ExitCode::from(2)
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<Report> {
    let command = std::env::args()
        .map(|a| if a.contains(' ') { format!("'{a}'") } else { a })
        .collect::<Vec<_>>()
        .join(" ");
    // Before spawning, so a spawned server inherits the raised limit.
    let open_files = system::raise_nofile(WANTED_OPEN_FILES)?;
    let mut servers = match &cli.common.spawn {
        Some(command) => vec![ServerProcess::spawn(command, cli.common.server_cpu)?],
        None => cli
            .common
            .server_pid
            .iter()
            .map(|pid| ServerProcess::existing(*pid))
            .collect::<anyhow::Result<_>>()?,
    };
    // After spawning: the spawn may have pinned this thread to the server's
    // CPU, and the runtime's threads inherit whatever this thread has.
    match cli.common.cpu {
        Some(cpu) => system::pin_to_cpu(cpu)?,
        None if cli.common.server_cpu.is_some() => system::unpin()?,
        None => {}
    }
    let runtime = if cli.common.threads <= 1 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(cli.common.threads)
            .enable_all()
            .build()
    }
    .context("while starting the async runtime")?;
    let ctx = Ctx {
        common: cli.common.clone(),
        server_pids: servers.iter().map(|s| s.pid).collect(),
        command,
        open_files,
    };
    let result = runtime.block_on(async {
        if let Some(server) = servers.iter().find(|s| s.spawned()) {
            wait_for_port(&ctx.common.url, server.pid).await?;
        }
        match &cli.scenario {
            Scenario::Connect(args) => scenario::connect::run(&ctx, args).await,
            Scenario::Fanout(args) => scenario::fanout::run(&ctx, args).await,
            Scenario::Subscribers(args) => scenario::subscribers::run(&ctx, args).await,
            Scenario::Idle(args) => scenario::idle::run(&ctx, args).await,
            Scenario::Ingest(args) => scenario::ingest::run(&ctx, args).await,
            Scenario::Catchup(args) => scenario::catchup::run(&ctx, args).await,
            Scenario::Slow(args) => scenario::slow::run(&ctx, args).await,
            Scenario::Accept(args) => scenario::accept::run(&ctx, args).await,
        }
    });
    // The runtime (and every connection) goes before the server does.
    drop(runtime);
    for server in &mut servers {
        server.stop();
    }
    let mut report = result?;
    report.setting("tool open-files limit", open_files);
    if let Some(cpu) = cli.common.cpu {
        report.setting("tool cpu", cpu);
    }
    if let Some(cpu) = cli.common.server_cpu {
        report.setting("server cpu", cpu);
    }
    report.setting("tool threads", cli.common.threads);
    if let Some(url) = &cli.common.subscribe_url {
        report.setting("subscribe url", url);
    }
    if !cli.common.pin_node.is_empty() {
        report.setting("pinned to", cli.common.pin_node.join(","));
    }
    if !cli.common.peer_url.is_empty() {
        report.setting("metrics also from", cli.common.peer_url.join(","));
    }
    if cli.common.server_pid.len() > 1 {
        report.setting(
            "server processes (CPU, RSS added up)",
            cli.common.server_pid.len(),
        );
    }
    print(&cli, &report)?;
    Ok(report)
}

fn print(cli: &Cli, report: &Report) -> anyhow::Result<()> {
    let json = serde_json::to_string_pretty(report)?;
    match cli.common.json.as_deref() {
        Some(path) if path.as_os_str() == "-" => {
            println!("{json}");
            return Ok(());
        }
        Some(path) => std::fs::write(path, json + "\n")
            .with_context(|| format!("while writing {}", path.display()))?,
        None => {}
    }
    let mut out = std::io::stdout().lock();
    out.write_all(report.to_markdown().as_bytes())?;
    out.flush()?;
    Ok(())
}

/// Waits for a spawned server to accept TCP connections on the URL's port
/// (up to 60 s), and fails early if it exits.
async fn wait_for_port(url: &str, pid: i32) -> anyhow::Result<()> {
    let authority = url
        .strip_prefix("ws://")
        .and_then(|rest| rest.split(['/', '?']).next())
        .context("--spawn needs a ws:// --url")?;
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        if tokio::net::TcpStream::connect(authority).await.is_ok() {
            return Ok(());
        }
        if system::sample(pid).is_err() {
            anyhow::bail!("the spawned server (pid {pid}) exited before listening on {authority}");
        }
        if tokio::time::Instant::now() >= deadline {
            anyhow::bail!("the spawned server did not listen on {authority} within 60 s");
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}
