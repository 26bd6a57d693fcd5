//! Crashes and outages: the server is killed mid-stream, or PostgreSQL goes
//! away under load; clients resume with `since` and no committed event is
//! missing.

use std::{
    process::{Child, Command, Stdio},
    sync::{
        atomic::{AtomicI64, AtomicUsize, Ordering},
        Arc,
    },
    time::Duration,
};

use reqwest::Method;
use serde_json::{json, Value};
use tokio::sync::watch;

use crate::helpers::*;
use crate::on_both_backends;

/// Generous for a loaded 2-core machine: a server start, an outage and the
/// clients' catch-up; every wait ends as soon as its condition holds.
const LONG: Duration = Duration::from_secs(60);
/// The admin key of the server binary these tests start (32 characters or
/// more, as a configured key must be).
const CRASH_ADMIN_KEY: &str = "crash-admin-key-0123456789abcdef-0123";

/// A client that reads everything and, whenever its connection drops,
/// reconnects with `since=<last id>`, until it has seen the id it is told
/// to reach. Its progress is shared so that tests can wait on it.
struct ResumingClient {
    /// The newest id it has seen (0 before the first).
    reached: Arc<AtomicI64>,
    /// How many events it has seen.
    count: Arc<AtomicUsize>,
    /// How many times it has connected.
    connections: Arc<AtomicUsize>,
    target: watch::Sender<Option<i64>>,
    task: tokio::task::JoinHandle<Vec<i64>>,
}

impl ResumingClient {
    fn start(url_base: String) -> ResumingClient {
        let reached = Arc::new(AtomicI64::new(0));
        let count = Arc::new(AtomicUsize::new(0));
        let connections = Arc::new(AtomicUsize::new(0));
        let (target, mut told) = watch::channel(None::<i64>);
        let progress = (reached.clone(), count.clone(), connections.clone());
        let task = tokio::spawn(async move {
            let (reached, count, connections) = progress;
            let mut seen: Vec<i64> = Vec::new();
            let done = |seen: &[i64], target: Option<i64>| {
                target.is_some_and(|target| seen.last().is_some_and(|last| *last >= target))
            };
            loop {
                if done(&seen, *told.borrow()) {
                    return seen;
                }
                let since = seen.last().copied().unwrap_or(0);
                let Ok((stream, _)) =
                    tokio_tungstenite::connect_async(format!("{url_base}&since={since}")).await
                else {
                    // pacing only: a pause between tries while the server is down; the result is decided by the ids the client reaches
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                };
                connections.fetch_add(1, Ordering::SeqCst);
                let mut ws = WsClient { stream };
                loop {
                    tokio::select! {
                        received = ws.next(Duration::from_secs(3600)) => match received {
                            Received::Json(event) if event.get("type").is_none() => {
                                let id = event["id"].as_i64().expect("id");
                                seen.push(id);
                                reached.store(id, Ordering::SeqCst);
                                count.fetch_add(1, Ordering::SeqCst);
                                if done(&seen, *told.borrow()) {
                                    return seen;
                                }
                            }
                            Received::Json(_) => {}
                            Received::Closed(_) => break,
                        },
                        changed = told.changed() => {
                            changed.expect("the test holds the target");
                            if done(&seen, *told.borrow()) {
                                return seen;
                            }
                        }
                    }
                }
            }
        });
        ResumingClient {
            reached,
            count,
            connections,
            target,
            task,
        }
    }
}

/// The clients' progress as (connections, events seen, newest id), for
/// conditions and for what a timeout reports.
fn progress(clients: &[ResumingClient]) -> Vec<(usize, usize, i64)> {
    clients
        .iter()
        .map(|c| {
            (
                c.connections.load(Ordering::SeqCst),
                c.count.load(Ordering::SeqCst),
                c.reached.load(Ordering::SeqCst),
            )
        })
        .collect()
}

/// Waits until every client has seen at least `events` events.
async fn wait_reading(clients: &[ResumingClient], events: usize) {
    wait_for(
        &format!("every client to have read {events} events"),
        LONG,
        async || {
            let now = progress(clients);
            if now.iter().all(|(_, count, _)| *count >= events) {
                Ok(())
            } else {
                Err(format!("(connections, events, newest id) {now:?}"))
            }
        },
    )
    .await
}

/// Tells every client to stop at `last`, waits until each has reached it,
/// and returns what each saw.
async fn finish_at(clients: Vec<ResumingClient>, last: i64) -> Vec<Vec<i64>> {
    for client in &clients {
        client.target.send_replace(Some(last));
    }
    wait_for(
        &format!("every client to reach id {last}"),
        LONG,
        async || {
            let now = progress(&clients);
            if now.iter().all(|(_, _, reached)| *reached >= last) {
                Ok(())
            } else {
                Err(format!("(connections, events, newest id) {now:?}"))
            }
        },
    )
    .await;
    let mut seen = Vec::new();
    for client in clients {
        seen.push(client.task.await.expect("client"));
    }
    seen
}

/// Checks a client saw exactly the log, in order, from its first event on.
fn assert_saw_everything(seen: &[i64], log: &[i64]) {
    let first = *seen.first().expect("the client saw events");
    let expected: Vec<i64> = log.iter().copied().filter(|id| *id >= first).collect();
    assert_eq!(
        seen,
        expected.as_slice(),
        "every committed event once, in order"
    );
}

struct Process {
    child: Child,
    port: u16,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

fn start_binary(db: &TestDb, port: u16) -> Process {
    let config = db.dir.path().join("crash.toml");
    std::fs::write(
        &config,
        r#"
        [[instances]]
        name = "busy"
        driver = { kind = "simulator", rate = 400.0, seed = 7 }
        "#,
    )
    .expect("config");
    let mut command = Command::new(env!("CARGO_BIN_EXE_switchboard"));
    command
        .args(["--config", config.to_str().expect("path"), "run"])
        .env("SWITCHBOARD__HTTP__ADDRESS", "127.0.0.1")
        .env("SWITCHBOARD__HTTP__PORT", port.to_string())
        .env("SWITCHBOARD__HTTP__WORKERS", "1")
        .env("SWITCHBOARD__DATA_DIR", db.dir.path())
        .env("SWITCHBOARD__AUTH__API_KEY", CRASH_ADMIN_KEY)
        .env("SWITCHBOARD__MODEM__RESTART_BACKOFF_INITIAL_MS", "50")
        .env("RUST_LOG", "warn")
        .env_remove("DATABASE_URL")
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    if let Some(url) = &db.url {
        command.env("DATABASE_URL", url);
    }
    Process {
        child: command.spawn().expect("start the server binary"),
        port,
    }
}

async fn wait_healthy(port: u16) {
    let client = http_client();
    wait_for("the server to be ready", LONG, async || {
        client
            .get(format!("http://127.0.0.1:{port}/ready"))
            .send()
            .await
            .is_ok_and(|response| response.status() == 200)
    })
    .await
}

async fn read_all(port: u16, key: &str) -> Vec<i64> {
    let client = http_client();
    let mut ids = Vec::new();
    let mut since = 0;
    loop {
        let page: Value = client
            .get(format!(
                "http://127.0.0.1:{port}/events?since={since}&limit=1000"
            ))
            .header("apikey", key)
            .send()
            .await
            .expect("send")
            .json()
            .await
            .expect("json");
        ids.extend(
            page["events"]
                .as_array()
                .expect("events")
                .iter()
                .map(|e| e["id"].as_i64().expect("id")),
        );
        since = page["next"].as_i64().expect("next");
        if !page["more"].as_bool().expect("more") {
            return ids;
        }
    }
}

on_both_backends! {
    async fn clients_resume_after_the_server_is_killed_and_miss_no_committed_event(backend: Backend) {
        let db = TestDb::new(backend).await;
        let port = free_port();
        let mut server = start_binary(&db, port);
        wait_healthy(port).await;
        let url = format!("ws://127.0.0.1:{port}/ws?apikey={CRASH_ADMIN_KEY}");
        let clients: Vec<_> = (0..3).map(|_| ResumingClient::start(url.clone())).collect();
        // The kill comes while every client is in the middle of the stream.
        wait_reading(&clients, 300).await;

        // SIGKILL: no shutdown, no flush, whatever was in flight is gone.
        server.child.kill().expect("kill");
        server.child.wait().expect("reap");
        let mut server = start_binary(&db, server.port);
        wait_healthy(port).await;
        // Every client resumes on the new server and reads well past what
        // was committed when it came back.
        let head = *read_all(port, CRASH_ADMIN_KEY).await.last().expect("events");
        wait_for("every client to resume and read the new server's events", LONG, async || {
            let now = progress(&clients);
            if now.iter().all(|(connections, _, reached)| *connections >= 2 && *reached >= head + 400) {
                Ok(())
            } else {
                Err(format!("head {head} at the restart; (connections, events, newest id) {now:?}"))
            }
        })
        .await;
        let stopped = http_client()
            .delete(format!("http://127.0.0.1:{port}/instance/logout/busy"))
            .header("apikey", CRASH_ADMIN_KEY)
            .send()
            .await
            .expect("send");
        assert_eq!(stopped.status(), 200);
        let log = read_all(port, CRASH_ADMIN_KEY).await;
        let last = *log.last().expect("events");
        // The clients read on to the end of the log and stop there.
        for seen in finish_at(clients, last).await {
            assert_eq!(seen.last().copied(), Some(last), "the client caught up");
            assert_saw_everything(&seen, &log);
        }
        server.child.kill().expect("kill");
        server.child.wait().expect("reap");
    }
}

/// Load, then a database outage, then recovery: while the database is down
/// requests get 503 fast (not a hang) and readiness says so; afterwards the
/// server recovers by itself, the simulators write again, and every client
/// that kept resuming has every committed event once, in order.
/// `outage` takes the database down and returns once requests can tell;
/// `recovery` waits until it is back.
async fn survive_outage(
    app: TestApp,
    outage: impl std::future::Future<Output = ()>,
    recovery: impl std::future::Future<Output = ()>,
) {
    for name in ["load1", "load2"] {
        app.create_instance(
            name,
            json!({ "kind": "simulator", "rate": 300.0, "echo": false }),
        )
        .await;
    }
    let clients: Vec<_> = (0..3)
        .map(|_| ResumingClient::start(app.ws_url(&format!("/ws?apikey={}", app.admin_key))))
        .collect();
    app.send_text("load1", "+15550000001", "before").await;
    // The outage comes while every client is in the middle of the stream.
    wait_reading(&clients, 200).await;

    outage.await;
    wait_for("readiness to report the database down", LONG, async || {
        app.http
            .get(app.url("/ready"))
            .send()
            .await
            .expect("send")
            .status()
            == 503
    })
    .await;
    let started = std::time::Instant::now();
    let during = app
        .admin(Method::POST, "/message/sendText/load1")
        .json(&json!({ "number": "+15550000001", "text": "during" }))
        .send()
        .await
        .expect("send");
    assert_eq!(during.status(), 503);
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "answered, not hung"
    );
    recovery.await;

    wait_for(
        "the server to recover by itself and accept a text",
        LONG,
        async || {
            let after = app
                .admin(Method::POST, "/message/sendText/load1")
                .json(&json!({ "number": "+15550000001", "text": "after" }))
                .send()
                .await
                .expect("send");
            match after.status().as_u16() {
                201 => Ok(()),
                status => Err(format!("sendText answers {status}")),
            }
        },
    )
    .await;
    let before = app.read_log("").await.len();
    wait_for("the simulators to write again", LONG, async || {
        let now = app.read_log("").await.len();
        if now > before + 100 {
            Ok(())
        } else {
            Err(format!("{now} events, {before} at the recovery"))
        }
    })
    .await;
    for name in ["load1", "load2"] {
        app.admin(Method::DELETE, &format!("/instance/logout/{name}"))
            .send()
            .await
            .expect("send");
    }
    let log: Vec<i64> = app
        .read_log("")
        .await
        .iter()
        .map(|e| e["id"].as_i64().expect("id"))
        .collect();
    let last = *log.last().expect("events");
    // The clients read on to the end of the log and stop there.
    for seen in finish_at(clients, last).await {
        assert_eq!(seen.last(), log.last(), "the client caught up");
        assert_saw_everything(&seen, &log);
    }
    let contents: Vec<String> = app
        .read_log("&events=outgoing")
        .await
        .iter()
        .map(|e| e["data"]["content"].as_str().unwrap_or("").to_owned())
        .collect();
    assert_eq!(
        contents,
        ["before", "after"],
        "nothing half-written from the outage"
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_cut_off_under_load_gives_503_not_hangs_and_loses_nothing_committed() {
    // Every connection dropped (mid-transaction too), new ones refused.
    let db = TestDb::behind_proxy().await;
    let app = TestApp::spawn(&db).await;
    let proxy = db.proxy();
    survive_outage(app, async { proxy.cut() }, async {
        // pacing only: the cut lasts 2 s, the scenario's length; the result is decided by the recovery checks that follow
        tokio::time::sleep(Duration::from_secs(2)).await;
        proxy.restore();
    })
    .await;
}

/// The throw-away cluster scripts/test.sh provides, and its restart script;
/// the test fails (it does not skip) when run without them.
fn restartable_postgres() -> (String, String) {
    let hint = "run the tests with scripts/test.sh: it provides a PostgreSQL this test may restart";
    (
        std::env::var("TEST_RESTARTABLE_DATABASE_URL").expect(hint),
        std::env::var("TEST_PG_RESTART").expect(hint),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_postgres_restart_under_load_gives_503_not_hangs_and_loses_nothing_committed() {
    let (admin_url, restart) = restartable_postgres();
    let db = TestDb::on_server(&admin_url).await;
    let app = TestApp::spawn(&db).await;
    // A fast shutdown terminates every session; it stays down 6 s, longer
    // than the pool waits for a connection (3 s), so a request meanwhile
    // must fail fast rather than succeed late. The restart waits for its cue
    // so that it falls after the load has started, never before.
    let (cue, wait_for_cue) = tokio::sync::oneshot::channel::<()>();
    let restarting = tokio::task::spawn_blocking(move || {
        if wait_for_cue.blocking_recv().is_err() {
            return;
        }
        let status = Command::new(&restart)
            .arg("6")
            .status()
            .expect("run the restart script");
        assert!(status.success(), "the restart script failed");
    });
    survive_outage(
        app,
        async move {
            cue.send(()).expect("the restart task waits");
        },
        async {
            restarting.await.expect("restart");
        },
    )
    .await;
}
