//! `accept`: how fast the gateway takes texts (issue 12). N HTTP clients
//! each POST `message/sendText/{instance}` back to back (one request in
//! flight per client, over a kept-alive connection) against 1, then 10
//! simulator instances, spread round robin. The server answers 201 only
//! once the text is committed to the outbox, so accepted/s is durable
//! accepts; the latency is the request's round trip to the 201. The
//! simulators send each text meanwhile, unless `--stopped` stopped them:
//! then the texts stay queued and only the accept path is measured.

use std::{
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        Arc, Mutex,
    },
    time::Instant,
};

use hdrhistogram::Histogram;

use crate::{
    cli::AcceptArgs,
    report::{per_sec, Report},
    scenario::{measure, note_other_load, secs, Ctx, Window},
    stats::{human_us, new_histogram, Latency},
    switchboard::{Admin, Instances},
};

const PREFIX: &str = "bench-accept";
/// The recipient of every text: the simulator "sends" to any number.
const NUMBER: &str = "+15550001234";
/// A short text: one SMS part.
const TEXT: &str = "switchboard-bench accept";
/// Refusals and failures kept as samples for the report.
const MAX_SAMPLES: usize = 5;

/// What the clients saw; they record all the time, windows take differences.
#[derive(Default)]
struct Tally {
    accepted: AtomicU64,
    /// Answers other than 201 (a refusal: 4xx, 5xx).
    refused: AtomicU64,
    /// Requests that got no answer (connection error, timeout).
    failed: AtomicU64,
    latencies: Mutex<Option<Histogram<u64>>>,
    samples: Mutex<Vec<String>>,
}

impl Tally {
    fn counts(&self) -> (u64, u64, u64) {
        (
            self.accepted.load(Ordering::Relaxed),
            self.refused.load(Ordering::Relaxed),
            self.failed.load(Ordering::Relaxed),
        )
    }

    /// The latencies since the last call, and a fresh histogram.
    fn take_latencies(&self) -> Histogram<u64> {
        let mut guard = self.latencies.lock().unwrap_or_else(|e| e.into_inner());
        guard.replace(new_histogram()).unwrap_or_else(new_histogram)
    }

    fn record_accept(&self, micros: u64) {
        self.accepted.fetch_add(1, Ordering::Relaxed);
        let mut guard = self.latencies.lock().unwrap_or_else(|e| e.into_inner());
        let hist = guard.get_or_insert_with(new_histogram);
        hist.saturating_record(micros.max(1));
    }

    fn sample(&self, what: String) {
        let mut samples = self.samples.lock().unwrap_or_else(|e| e.into_inner());
        if samples.len() < MAX_SAMPLES {
            samples.push(what);
        }
    }
}

/// One measured instance count.
struct Step {
    instances: usize,
    seconds: f64,
    accepted: u64,
    refused: u64,
    failed: u64,
    latency: Latency,
    window: Window,
}

pub async fn run(ctx: &Ctx, args: &AcceptArgs) -> anyhow::Result<Report> {
    let clients = ctx.pick(args.clients, 4, 50).max(1);
    let counts = ctx.pick(args.instances.clone(), vec![1, 2], vec![1, 10]);
    let duration = ctx.pick(args.duration, 2.0, 10.0);
    let warmup = ctx.pick(args.warmup, 0.5, 2.0);
    let mut report = ctx.report(
        "accept",
        "sendText accepted per second (201: committed to the outbox) with N concurrent HTTP clients, and the latency of the 201.",
    );
    let admin = ctx.healthy_admin().await?;
    let backend = admin.backend().await?;
    report.setting("database", &backend);
    report.setting("clients", clients);
    report.setting("duration_s", duration);
    report.setting("warmup_s", warmup);
    report.setting(
        "drivers",
        if args.stopped {
            "stopped (texts only queued)"
        } else {
            "running (the simulators send every text)"
        },
    );

    let mut steps = Vec::new();
    for &count in &counts {
        let count = count.max(1);
        let mut instances = Instances::new(&admin);
        let outcome = async {
            // Rate 0: the simulators make no events of their own, only
            // those of the texts they are given.
            instances
                .create(PREFIX, count, 0.0, ctx.common.seed)
                .await?;
            if args.stopped {
                instances.stop_all().await?;
            }
            step(ctx, &admin, count, clients, warmup, duration).await
        }
        .await;
        let cleanup = instances.delete_all().await;
        let (step, samples) = outcome?;
        cleanup?;
        if !ctx.common.smoke {
            eprintln!(
                "  {count} instance(s): {} accepted/s, p99 {}",
                per_sec(step.accepted as f64 / step.seconds.max(1e-9)),
                human_us(step.latency.p99_us)
            );
        }
        for sample in samples {
            report.note(sample);
        }
        steps.push(step);
    }

    report.columns = [
        "instances",
        "clients",
        "accepted/s",
        "p50",
        "p90",
        "p99",
        "max",
        "refused",
        "failed",
        "committed events/s",
        "server cores",
        "server CPU/accept",
        "client cores",
    ]
    .map(String::from)
    .to_vec();
    for s in &steps {
        let per_accept = s.window.server.and_then(|u| u.cpu_us_per(s.accepted));
        report.rows.push(vec![
            s.instances.to_string(),
            clients.to_string(),
            per_sec(s.accepted as f64 / s.seconds.max(1e-9)),
            human_us(s.latency.p50_us),
            human_us(s.latency.p90_us),
            human_us(s.latency.p99_us),
            human_us(s.latency.max_us),
            s.refused.to_string(),
            s.failed.to_string(),
            s.window.committed_per_sec.map_or("-".into(), per_sec),
            s.window.server_cores_text(),
            per_accept.map_or("-".into(), |v| format!("{v:.1} µs")),
            s.window.client_cores_text(),
        ]);
        report.summary(
            &format!("{} instance(s)", s.instances),
            format!(
                "{} accepted/s on {backend}, p50 {}, p99 {}",
                per_sec(s.accepted as f64 / s.seconds.max(1e-9)),
                human_us(s.latency.p50_us),
                human_us(s.latency.p99_us)
            ),
        );
        report.check(s.accepted > 0, || {
            format!("no text was accepted with {} instance(s)", s.instances)
        });
        report.check(s.refused == 0 && s.failed == 0, || {
            format!(
                "{} refused and {} failed requests with {} instance(s)",
                s.refused, s.failed, s.instances
            )
        });
    }
    report.check(!steps.is_empty(), || "no step ran".into());
    note_other_load(&mut report, steps.iter().map(|s| &s.window));
    report.data = serde_json::json!({
        "database": backend,
        "clients": clients,
        "drivers_stopped": args.stopped,
        "steps": steps.iter().map(|s| serde_json::json!({
            "instances": s.instances,
            "seconds": s.seconds,
            "accepted": s.accepted,
            "accepted_per_sec": s.accepted as f64 / s.seconds.max(1e-9),
            "refused": s.refused,
            "failed": s.failed,
            "latency": s.latency,
            "window": s.window,
        })).collect::<Vec<_>>(),
    });
    Ok(report)
}

/// Runs `clients` senders over `count` instances: a warm-up, then one
/// measured window; stops them and waits for each.
async fn step(
    ctx: &Ctx,
    admin: &Admin,
    count: usize,
    clients: usize,
    warmup: f64,
    duration: f64,
) -> anyhow::Result<(Step, Vec<String>)> {
    let tally = Arc::new(Tally::default());
    let stop = Arc::new(AtomicBool::new(false));
    let names: Arc<Vec<String>> = Arc::new((0..count).map(|i| format!("{PREFIX}-{i}")).collect());
    let senders: Vec<_> = (0..clients)
        .map(|client| {
            let (admin, tally, stop, names) =
                (admin.clone(), tally.clone(), stop.clone(), names.clone());
            tokio::spawn(async move {
                let mut turn = client;
                while !stop.load(Ordering::Relaxed) {
                    let instance = &names[turn % names.len()];
                    turn += 1;
                    let started = Instant::now();
                    match admin.send_text(instance, NUMBER, TEXT).await {
                        Ok(status) if status == reqwest::StatusCode::CREATED => {
                            tally.record_accept(started.elapsed().as_micros() as u64)
                        }
                        Ok(status) => {
                            tally.refused.fetch_add(1, Ordering::Relaxed);
                            tally.sample(format!("sendText to {instance} answered {status}"));
                        }
                        Err(err) => {
                            tally.failed.fetch_add(1, Ordering::Relaxed);
                            tally.sample(format!("sendText to {instance} failed: {err:#}"));
                        }
                    }
                }
            })
        })
        .collect();
    tokio::time::sleep(secs(warmup)).await;
    // The WebSocket counters of `measure` stay at zero here: it is used for
    // the server's CPU, the other load and the committed events.
    let idle_stats = ctx.stats();
    tally.take_latencies();
    let (a0, r0, f0) = tally.counts();
    let start = Instant::now();
    let window = measure(ctx, &idle_stats, Some(admin), secs(duration)).await;
    let (a1, r1, f1) = tally.counts();
    let seconds = start.elapsed().as_secs_f64();
    let latencies = tally.take_latencies();
    stop.store(true, Ordering::Relaxed);
    for sender in senders {
        let _ = sender.await;
    }
    let samples = std::mem::take(&mut *tally.samples.lock().unwrap_or_else(|e| e.into_inner()));
    Ok((
        Step {
            instances: count,
            seconds,
            accepted: a1 - a0,
            refused: r1 - r0,
            failed: f1 - f0,
            latency: Latency::from_histogram(&latencies),
            window: window?,
        },
        samples,
    ))
}
