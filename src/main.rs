//! The `switchboard` binary: parse the command line, load the settings, set
//! up logging, then build and run the server (or another command).

use std::{
    io::{Read, Write},
    net::{SocketAddr, TcpStream},
    path::PathBuf,
    process::ExitCode,
    time::Duration,
};

use anyhow::Context;
use clap::{Parser, Subcommand};
use secrecy::ExposeSecret;
use switchboard::{
    app::Application,
    config::{InstanceSeed, LogFormat, Settings},
    domain::{DriverConfig, SimulatorConfig},
    tools::modem_sim::{Endpoint, Profile, ServeOptions, SimSettings},
};
use tokio_util::sync::CancellationToken;

#[derive(Parser)]
#[command(
    version,
    about = "Multi-instance messaging bridge: modems in, durable events out"
)]
struct Cli {
    /// A TOML file layered over the defaults (before environment variables).
    #[arg(long, global = true, env = "SWITCHBOARD_CONFIG")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server (the default).
    Run {
        /// Also ensure an instance "demo" on the simulator, making a few
        /// random events a second, so there is something to watch.
        #[arg(long)]
        demo: bool,
    },
    /// Run a simulated GSM modem that speaks AT commands on a pseudo-terminal
    /// (default; the device path is printed) or a TCP port, to try the
    /// `serial` and `tcp` drivers without hardware.
    ModemSim(ModemSimArgs),
    /// Exit 0 if the server on this machine answers /health (for Docker).
    Healthcheck {
        #[arg(long, default_value = "127.0.0.1")]
        host: String,
    },
}

#[derive(clap::Args)]
struct ModemSimArgs {
    /// Listen on this TCP address (like ser2net) instead of a pseudo-terminal.
    #[arg(long)]
    tcp: Option<SocketAddr>,
    /// Keep a symbolic link to the pseudo-terminal here (it survives a
    /// simulated unplug); give this path to the `serial` driver.
    #[arg(long)]
    link: Option<PathBuf>,
    /// The SIM's own number.
    #[arg(long, default_value = "+15550009999")]
    number: String,
    #[arg(long, default_value = "Simulated Mobile")]
    operator: String,
    /// Vendor behaviour: generic; a76xx (refuses AT+CNMI=2,2,0,1,0 and any
    /// direct status-report routing, like some SIMCom A76xx); or
    /// direct_reports (cannot store status reports, only routes them).
    #[arg(long, default_value = "generic")]
    profile: String,
    /// Messages the SIM storage holds.
    #[arg(long, default_value_t = 30)]
    capacity: usize,
    /// Delay before the network's delivery report for each part.
    #[arg(long, default_value_t = 500)]
    report_delay_ms: u64,
    /// Delay before the answer to each `AT+CMGS` (a real modem's send).
    #[arg(long, default_value_t = 0)]
    submit_delay_ms: u64,
    /// A TCP address for the control socket: one JSON action per line, such
    /// as {"action": "sms", "from": "+15551234567", "text": "hi"}.
    #[arg(long)]
    control: Option<SocketAddr>,
    /// A file of JSON actions, one per line, each with an optional "after_ms".
    #[arg(long)]
    script: Option<PathBuf>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let settings = match Settings::load(cli.config.as_deref()) {
        Ok(settings) => settings,
        Err(err) => {
            eprintln!("switchboard: {err:#}");
            return ExitCode::from(2);
        }
    };
    let result = match cli.command.unwrap_or(Command::Run { demo: false }) {
        Command::Run { demo } => run(settings, demo),
        Command::ModemSim(args) => modem_sim(settings.log.format, args),
        Command::Healthcheck { host } => healthcheck(&host, settings.http.port),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("switchboard: {err:#}");
            ExitCode::FAILURE
        }
    }
}

/// Logs go to standard output; colours only when it is a terminal, so a log
/// redirected to a file or a pipe holds no escape codes.
fn init_tracing(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let colour = std::io::IsTerminal::is_terminal(&std::io::stdout());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(colour);
    match format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.init(),
    }
}

fn run(mut settings: Settings, demo: bool) -> anyhow::Result<()> {
    init_tracing(settings.log.format);
    if demo && !settings.instances.iter().any(|i| i.name == "demo") {
        settings.instances.push(InstanceSeed {
            name: "demo".into(),
            driver: DriverConfig::Simulator(SimulatorConfig {
                rate: 2.0,
                ..SimulatorConfig::default()
            }),
        });
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("while starting the async runtime")?;
    runtime.block_on(async move {
        let data_dir = settings.data_dir.clone();
        let embedded = settings.database.url.is_none();
        let settings_key_configured = settings.auth.api_key.is_some();
        let app = Application::build(settings).await?;
        let port = app.port();
        let handle = app.handle();
        println!("switchboard is listening on port {port}");
        if embedded {
            println!("  database:  embedded SQLite in {}", data_dir.display());
        }
        let stored = data_dir.join("admin.key");
        if app.admin_key_generated() {
            // The one time the key is shown: later starts (a container
            // restarting with the same data directory) only say where it is.
            println!(
                "  admin key: {}\n             (generated by this first start and shown only now; \
                 it is stored in {}, readable by this user only)",
                app.admin_key().expose_secret(),
                stored.display()
            );
        } else if settings_key_configured {
            println!("  admin key: the configured one (auth.api_key)");
        } else {
            println!("  admin key: the one stored in {}", stored.display());
        }
        println!("  WebSocket: ws://127.0.0.1:{port}/ws?apikey=<admin key>");
        println!("  REST API:  http://127.0.0.1:{port}/instance/fetchInstances (header apikey: <admin key>)");
        if demo {
            println!("  demo:      instance 'demo' runs the simulator");
        }
        tokio::spawn(async move {
            wait_for_signal().await;
            handle.stop();
        });
        app.run_until_stopped().await
    })
}

fn modem_sim(format: LogFormat, args: ModemSimArgs) -> anyhow::Result<()> {
    init_tracing(format);
    let profile = match args.profile.as_str() {
        "generic" => Profile::Generic,
        "a76xx" => Profile::A76xx,
        "direct_reports" => Profile::DirectReports,
        other => anyhow::bail!("--profile must be generic, a76xx or direct_reports, not '{other}'"),
    };
    let options = ServeOptions {
        settings: SimSettings {
            number: args.number,
            operator: args.operator,
            profile,
            capacity: args.capacity.max(1),
            report_delay: Duration::from_millis(args.report_delay_ms),
            submit_delay: Duration::from_millis(args.submit_delay_ms),
            ..SimSettings::default()
        },
        endpoint: match args.tcp {
            Some(addr) => Endpoint::Tcp(addr),
            None => Endpoint::Pty { link: args.link },
        },
        control: args.control,
        script: args.script,
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .context("while starting the async runtime")?;
    runtime.block_on(async move {
        let stop = CancellationToken::new();
        let signal = stop.clone();
        tokio::spawn(async move {
            wait_for_signal().await;
            signal.cancel();
        });
        switchboard::tools::modem_sim::serve(options, stop).await
    })
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// A bare HTTP/1.0 GET of /health, so the container image needs no curl.
fn healthcheck(host: &str, port: u16) -> anyhow::Result<()> {
    let mut stream = TcpStream::connect((host, port))
        .with_context(|| format!("cannot connect to {host}:{port}"))?;
    stream.set_read_timeout(Some(Duration::from_secs(3)))?;
    stream.write_all(format!("GET /health HTTP/1.0\r\nHost: {host}\r\n\r\n").as_bytes())?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    if response.starts_with("HTTP/1.1 200") || response.starts_with("HTTP/1.0 200") {
        Ok(())
    } else {
        anyhow::bail!(
            "unhealthy: {}",
            response.lines().next().unwrap_or("no answer")
        )
    }
}
