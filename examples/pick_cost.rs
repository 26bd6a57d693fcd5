//! What the scheduler's pick costs as a queue grows: the time of one claim
//! (`Store::claim_next`, the statement a driver runs before each send) with
//! 1,000, 100,000 or 1,000,000 texts waiting, on PostgreSQL or SQLite.
//!
//! Three queues, each measured with `--claims` claims of one text:
//! - `due`: every waiting text is due now (a campaign held back by a
//!   throttle): the claim takes the first by priority and age.
//! - `scheduled`: the texts are scheduled a year ahead and only the ones
//!   claimed are due (`sendAt` far out for most of the queue).
//! - `pool`: every waiting text sits in a round-robin pool of two members,
//!   claimed by one of them.
//!
//! ```sh
//! cargo run --release --example pick_cost -- --sizes 1000,100000,1000000
//! cargo run --release --example pick_cost -- --database-url postgres://postgres@127.0.0.1/postgres
//! ```
//!
//! With a PostgreSQL URL it creates (and drops) one database per queue
//! next to the one named, and `ANALYZE`s the filled outbox as autovacuum
//! would; without one it uses SQLite files in a temporary directory.
//! Output: one Markdown table row per queue and size.
//!
//! Written as an example rather than a bench-tool scenario: it measures
//! the store itself, which only this crate's library reaches.

use std::time::{Duration, Instant};

use anyhow::Context;
use chrono::Utc;
use secrecy::SecretString;
use switchboard::{
    domain::{
        DriverConfig, InstanceName, InstanceSettings, PoolSpec, Retention, Schedule, Strategy,
    },
    store::{Change, InstanceRow, Isolation, Job, OutboxRow, PoolRow, Store},
};

/// Texts inserted per transaction while filling a queue.
const FILL_BATCH: usize = 10_000;

struct Args {
    database_url: Option<String>,
    sizes: Vec<usize>,
    claims: usize,
}

fn args() -> anyhow::Result<Args> {
    let mut args = Args {
        database_url: None,
        sizes: vec![1_000, 100_000, 1_000_000],
        claims: 200,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().with_context(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--database-url" => args.database_url = Some(value()?),
            "--sizes" => {
                args.sizes = value()?
                    .split(',')
                    .map(|s| s.trim().parse().context("--sizes takes numbers"))
                    .collect::<anyhow::Result<_>>()?
            }
            "--claims" => args.claims = value()?.parse().context("--claims takes a number")?,
            other => anyhow::bail!(
                "unknown argument {other}: --database-url URL, --sizes N,N,..., --claims N"
            ),
        }
    }
    Ok(args)
}

#[derive(Clone, Copy, Debug)]
enum Shape {
    Due,
    Scheduled,
    Pool,
}

fn name(s: &str) -> InstanceName {
    InstanceName::parse(s).expect("a valid name")
}

fn instance(s: &str) -> InstanceRow {
    InstanceRow {
        name: name(s),
        id: uuid::Uuid::now_v7(),
        driver: DriverConfig::default(),
        key_hash: format!("bench-{s}"),
        enabled: false,
        websocket: Default::default(),
        retention: Retention::default(),
        created_at: Utc::now(),
        settings: InstanceSettings::default(),
        node: None,
    }
}

async fn commit(store: &Store, changes: Vec<Change>) -> anyhow::Result<()> {
    let job = Job {
        events: Vec::new(),
        changes,
        fence: None,
    };
    let batch = store.commit(&[job], Isolation::Batch).await?;
    for outcome in batch.outcomes {
        outcome?;
    }
    Ok(())
}

/// Fills a queue of `size` waiting texts (plus the due ones the claims
/// take when most are scheduled).
async fn fill(store: &Store, shape: Shape, size: usize, claims: usize) -> anyhow::Result<()> {
    commit(
        store,
        vec![
            Change::CreateInstance(instance("alpha")),
            Change::CreateInstance(instance("beta")),
        ],
    )
    .await?;
    if let Shape::Pool = shape {
        let spec = PoolSpec {
            strategy: Strategy::RoundRobin,
            members: vec![name("alpha"), name("beta")],
            rules: Vec::new(),
            throttle: Default::default(),
        };
        commit(
            store,
            vec![
                Change::CreatePool {
                    pool: PoolRow {
                        name: name("uk"),
                        spec,
                        created_at: Utc::now(),
                    },
                    max_pools: 10,
                },
                Change::SetHealth {
                    instance: name("alpha"),
                    healthy: true,
                },
                Change::SetHealth {
                    instance: name("beta"),
                    healthy: true,
                },
            ],
        )
        .await?;
    }
    let now = Utc::now();
    let later = Schedule {
        send_at: Some(now + chrono::Duration::days(365)),
        ..Schedule::default()
    };
    let row = |n: usize, schedule: Schedule| {
        let owner = match shape {
            Shape::Pool => name("uk"),
            _ => name("alpha"),
        };
        let mut row = OutboxRow::queued(
            format!("m{n:08}"),
            owner.clone(),
            "+15551234567".into(),
            "Your code is 1234".into(),
            now - chrono::Duration::seconds(60),
        );
        row.schedule = schedule;
        row.pool = matches!(shape, Shape::Pool).then_some(owner);
        row
    };
    let mut changes = Vec::with_capacity(FILL_BATCH);
    for n in 0..size {
        let schedule = match shape {
            Shape::Scheduled => later,
            _ => Schedule::default(),
        };
        changes.push(Change::EnqueueMessage(row(n, schedule)));
        if changes.len() == FILL_BATCH {
            commit(store, std::mem::take(&mut changes)).await?;
        }
    }
    if let Shape::Scheduled = shape {
        // The ones the claims take, due now and newest: they sort last.
        for n in size..size + claims {
            changes.push(Change::EnqueueMessage(row(n, Schedule::default())));
        }
    }
    if !changes.is_empty() {
        commit(store, changes).await?;
    }
    Ok(())
}

/// Claims one text at a time; the time of each claim. A round-robin pool
/// gives its members turns, so its claims alternate between the two.
async fn measure(store: &Store, shape: Shape, claims: usize) -> anyhow::Result<Vec<Duration>> {
    let members = match shape {
        Shape::Pool => vec![name("alpha"), name("beta")],
        _ => vec![name("alpha")],
    };
    let minute = chrono::Duration::seconds(60);
    let mut times = Vec::with_capacity(claims);
    for member in members.iter().cycle().take(claims) {
        let started = Instant::now();
        let claim = store.claim_next(member, Utc::now(), 1, &[], minute).await?;
        times.push(started.elapsed());
        anyhow::ensure!(
            claim.messages.len() == 1,
            "a claim took {} texts",
            claim.messages.len()
        );
    }
    Ok(times)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index.min(sorted.len() - 1)]
}

/// Runs one statement through `psql` on the server the URL names.
fn psql(url: &str, sql: &str) -> anyhow::Result<()> {
    let status = std::process::Command::new("psql")
        .args([url, "-qAtc", sql])
        .status()
        .context("psql (the PostgreSQL client) creates and drops the databases")?;
    anyhow::ensure!(status.success(), "psql failed on: {sql}");
    Ok(())
}

/// A fresh store for one measurement: its own PostgreSQL database beside
/// the one the URL names, or its own SQLite directory.
/// Also answers the new database's URL on PostgreSQL.
async fn open(
    url: Option<&str>,
    label: &str,
    dir: &std::path::Path,
) -> anyhow::Result<(Store, Option<String>)> {
    let Some(url) = url else {
        return Ok((Store::connect(None, &dir.join(label), 4).await?, None));
    };
    let (base, _) = url
        .rsplit_once('/')
        .context("a PostgreSQL URL names a database")?;
    psql(url, &format!("DROP DATABASE IF EXISTS sbpick_{label}"))?;
    psql(url, &format!("CREATE DATABASE sbpick_{label}"))?;
    let own = format!("{base}/sbpick_{label}");
    let store = Store::connect(Some(&SecretString::from(own.clone())), dir, 4).await?;
    Ok((store, Some(own)))
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let args = args()?;
    let dir = tempfile::tempdir()?;
    let backend = if args.database_url.is_some() {
        "PostgreSQL"
    } else {
        "SQLite"
    };
    println!("| backend | queue | waiting | claims | p50 | p99 | mean |");
    println!("| --- | --- | --- | --- | --- | --- | --- |");
    for &size in &args.sizes {
        for shape in [Shape::Due, Shape::Scheduled, Shape::Pool] {
            let label = format!("{shape:?}_{size}").to_lowercase();
            let (store, own) = open(args.database_url.as_deref(), &label, dir.path()).await?;
            fill(&store, shape, size, args.claims).await?;
            if let Some(own) = own {
                // What autovacuum does within a minute of a table growing
                // by a tenth: without statistics, PostgreSQL plans the
                // pick for an empty table.
                psql(&own, "ANALYZE outbox")?;
            }
            let mut times = measure(&store, shape, args.claims).await?;
            times.sort();
            let mean = times.iter().sum::<Duration>() / times.len() as u32;
            println!(
                "| {backend} | {shape:?} | {size} | {} | {:.2} ms | {:.2} ms | {:.2} ms |",
                args.claims,
                percentile(&times, 0.5).as_secs_f64() * 1e3,
                percentile(&times, 0.99).as_secs_f64() * 1e3,
                mean.as_secs_f64() * 1e3,
            );
            store.close().await;
            if let Some(url) = &args.database_url {
                psql(url, &format!("DROP DATABASE IF EXISTS sbpick_{label}"))?;
            }
        }
    }
    Ok(())
}
