//! A client that sends Ping frames as fast as it can and reads nothing
//! (issue 9, item 1) costs the server a bounded amount of memory, is closed
//! with RATE_LIMITED (4029), and other clients do not notice. A client that
//! reads a trickle of what it is owed is still a client that does not read.

use std::{
    sync::{
        atomic::{AtomicBool, AtomicUsize, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use serde_json::json;
use switchboard::event::data::Direction;
use tokio::{io::AsyncWriteExt, net::TcpSocket};

use crate::helpers::*;
use crate::rfc6455::{frame, RawWs};

/// The resident memory of this process (the server runs in it), in bytes.
fn resident_bytes() -> usize {
    let status = std::fs::read_to_string("/proc/self/status").expect("read /proc/self/status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<usize>().ok())
        .expect("VmRSS in /proc/self/status")
        * 1024
}

/// A socket with a small receive buffer: what the server writes to it
/// backs up at once when the client does not read.
async fn small_window_socket(port: u16) -> tokio::net::TcpStream {
    let socket = TcpSocket::new_v4().expect("socket");
    socket.set_recv_buffer_size(4096).expect("SO_RCVBUF");
    socket
        .connect(([127, 0, 0, 1], port).into())
        .await
        .expect("connect")
}

/// Most bytes the flooding client sends, and most time it floods, when the
/// server never stops it (the bug this test catches).
const FLOOD_BYTES: usize = 512 << 20;
const FLOOD_TIME: Duration = Duration::from_secs(20);
/// Generous bounds: what the server may owe one client, and how much the
/// whole process (other tests run in it too) may grow during the flood.
const MAX_OWED: usize = 1 << 20;
const MAX_GROWTH: usize = 256 << 20;

/// Writes `batch` again and again, as fast as the server takes it, while
/// `going` says so (it is asked before each write) and within
/// [`FLOOD_BYTES`] and [`FLOOD_TIME`]; returns the bytes written.
async fn flood_until(
    stream: &mut tokio::net::TcpStream,
    batch: &[u8],
    mut going: impl FnMut() -> bool,
) -> usize {
    let started = Instant::now();
    let mut sent = 0;
    while going() && sent < FLOOD_BYTES && started.elapsed() < FLOOD_TIME {
        match tokio::time::timeout(Duration::from_millis(100), stream.write_all(batch)).await {
            Ok(Ok(())) => sent += batch.len(),
            Ok(Err(_)) => break,
            // The server stopped reading: see whether it closed us.
            Err(_) => continue,
        }
    }
    sent
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ping_flood_that_reads_nothing_is_closed_with_bounded_memory() {
    let db = TestDb::new(Backend::Sqlite).await;
    let app = TestApp::spawn(&db).await;
    app.create_instance("alpha", quick_simulator()).await;
    let key = app.admin_key.clone();
    let mut bystander = app
        .ws(&format!("/ws/alpha?apikey={key}&events=message"))
        .await;
    let baseline_rss = resident_bytes();

    let socket = small_window_socket(app.port).await;
    let mut flood = RawWs::upgrade(socket, &format!("/ws?apikey={key}")).await;
    let connections = || app.hub.stats().connections.load(Ordering::Relaxed);
    assert_eq!(connections(), 2);

    // Samples the server's own gauge and the process's memory throughout.
    let done = Arc::new(AtomicBool::new(false));
    let max_owed = Arc::new(AtomicUsize::new(0));
    let max_rss = Arc::new(AtomicUsize::new(baseline_rss));
    let sampler = {
        let (done, max_owed, max_rss, hub) = (
            done.clone(),
            max_owed.clone(),
            max_rss.clone(),
            app.hub.clone(),
        );
        tokio::spawn(async move {
            while !done.load(Ordering::Relaxed) {
                max_owed.fetch_max(
                    hub.stats().owed_bytes.load(Ordering::Relaxed),
                    Ordering::Relaxed,
                );
                max_rss.fetch_max(resident_bytes(), Ordering::Relaxed);
                // pacing only: the sampler's period; nothing is decided by it.
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
    };

    // Pings with the largest payload a control frame may carry, written as
    // fast as the server takes them, until the server drops this client
    // (its connection count falls back to the bystander alone) or the bound.
    let batch: Vec<u8> = (0..256)
        .flat_map(|_| frame(0x89, &[b'p'; 125], true))
        .collect();
    let sent = flood_until(&mut flood.stream, &batch, || connections() > 1).await;
    done.store(true, Ordering::Relaxed);
    sampler.await.expect("sampler");
    let owed = max_owed.load(Ordering::Relaxed);
    let growth = max_rss.load(Ordering::Relaxed).saturating_sub(baseline_rss);
    assert!(
        owed <= MAX_OWED,
        "the server owed the flooder {owed} bytes at once"
    );
    assert!(
        growth <= MAX_GROWTH,
        "memory grew by {growth} bytes during the flood ({sent} bytes of pings)"
    );
    wait_for("the flooding client to be dropped", WAIT, async || {
        connections() == 1
    })
    .await;
    // It is told why, now that it reads.
    let (code, texts) = flood.close(WAIT).await;
    assert_eq!(code, Some(4029), "{texts:?}");
    assert_eq!(
        texts.last().map(|t| t["data"]["code"].clone()),
        Some(json!("RATE_LIMITED"))
    );

    // The bystander noticed nothing.
    let marker = append_marker(
        &app.log,
        "alpha",
        marker_message(Direction::Incoming, "after the flood"),
    )
    .await;
    bystander.assert_next_is_marker(marker).await;
    bystander.send_json(json!({ "type": "ping" })).await;
    assert_eq!(bystander.control(WAIT).await["type"], "pong");
    bystander.close().await;
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_reads_only_a_trickle_of_what_it_is_owed_is_closed_as_stuck() {
    let db = TestDb::new(Backend::Sqlite).await;
    let mut settings = test_settings(&db);
    settings.http.ping_interval_secs = 1;
    settings.http.client_timeout_secs = 2;
    let app = TestApp::spawn_with(settings).await;
    app.create_instance("alpha", quick_simulator()).await;
    let socket = small_window_socket(app.port).await;
    let mut slow = RawWs::upgrade(socket, &format!("/ws/alpha?apikey={}", app.admin_key)).await;
    // Sixteen megabytes of events it is owed: more than the kernel's socket
    // buffers on both sides hold, so the server keeps owing it.
    append_messages(&app.log, "alpha", 4096, 256, 4000).await;
    // It answers every heartbeat in time (so it is not silent) and reads a
    // few kilobytes now and then (enough for its window to open and the
    // server to write a little), never catching up.
    let pong = frame(0x8A, b"", true);
    let started = Instant::now();
    let closed = loop {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the trickling client was never closed"
        );
        slow.send(&pong).await;
        let mut few = [0u8; 4096];
        let read = tokio::time::timeout(
            Duration::from_millis(500),
            tokio::io::AsyncReadExt::read(&mut slow.stream, &mut few),
        )
        .await;
        if matches!(read, Ok(Ok(0)) | Ok(Err(_))) {
            break true;
        }
        if app.hub.stats().connections.load(Ordering::Relaxed) == 0 {
            break true;
        }
        // pacing only: a trickle, one small read every half second.
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    assert!(closed);
    wait_for(
        "the stuck client's place to be given back",
        WAIT,
        async || app.hub.stats().connections.load(Ordering::Relaxed) == 0,
    )
    .await;
    app.stop().await;
}

/// A client that sends requests as fast as it may (the message rate limit
/// raised out of the way) and reads none of the answers is closed with 4002
/// once `MAX_REPLY_BACKLOG` bytes of replies wait unread: what the server
/// owes it stays bounded however long it goes on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_reads_none_of_its_replies_is_closed_once_they_pile_up() {
    let db = TestDb::new(Backend::Sqlite).await;
    let mut settings = test_settings(&db);
    settings.limits.client_messages_per_sec = 1_000_000;
    settings.limits.client_message_burst = 1_000_000;
    let app = TestApp::spawn_with(settings).await;
    app.create_instance("alpha", quick_simulator()).await;
    let socket = small_window_socket(app.port).await;
    let mut flood = RawWs::upgrade(socket, &format!("/ws/alpha?apikey={}", app.admin_key)).await;
    let connections = || app.hub.stats().connections.load(Ordering::Relaxed);
    assert_eq!(connections(), 1);

    let batch: Vec<u8> = (0..256)
        .flat_map(|_| frame(0x81, br#"{"type": "ping"}"#, true))
        .collect();
    let mut max_owed = 0;
    let sent = flood_until(&mut flood.stream, &batch, || {
        max_owed = max_owed.max(app.hub.stats().owed_bytes.load(Ordering::Relaxed));
        connections() > 0
    })
    .await;
    assert!(
        max_owed <= MAX_OWED,
        "the server owed the client {max_owed} bytes at once"
    );
    wait_for("the client to be dropped", WAIT, async || {
        connections() == 0
    })
    .await;
    // Reading at last, it finds its pongs, then why it was closed.
    let (code, _) = flood.close(WAIT).await;
    assert_eq!(code, Some(4002), "after {sent} bytes of requests");
    app.stop().await;
}
