//! A client that never reads must not slow the others or grow memory.

use std::{
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    time::Duration,
};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::helpers::*;
use crate::on_both_backends;

/// Opens a WebSocket by hand and then never reads again, with a tiny
/// receive buffer so its TCP window closes quickly.
async fn stuck_client(port: u16, key: &str) -> tokio::net::TcpStream {
    let socket =
        socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).expect("socket");
    socket.set_recv_buffer_size(4096).expect("rcvbuf");
    let addr: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().expect("addr");
    socket.connect(&addr.into()).expect("connect");
    socket.set_nonblocking(true).expect("nonblocking");
    let mut stream =
        tokio::net::TcpStream::from_std(std::net::TcpStream::from(socket)).expect("tokio stream");
    let request = format!(
        "GET /ws?apikey={key} HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n\
         Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
         Sec-WebSocket-Version: 13\r\n\r\n"
    );
    stream
        .write_all(request.as_bytes())
        .await
        .expect("handshake");
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        stream
            .read_exact(&mut byte)
            .await
            .expect("handshake response");
        head.push(byte[0]);
    }
    assert!(
        head.starts_with(b"HTTP/1.1 101"),
        "{}",
        String::from_utf8_lossy(&head)
    );
    stream
}

on_both_backends! {
    async fn a_client_that_never_reads_neither_delays_others_nor_grows_memory(backend: Backend) {
        let db = TestDb::new(backend).await;
        let mut settings = test_settings(&db);
        let limit = 4 * 1024 * 1024;
        settings.limits.connection_queue_bytes = limit;
        // Long enough that waiting for the stuck client to be dropped would
        // blow the reader's deadline below.
        settings.http.client_timeout_secs = 30;
        let app = TestApp::spawn_with(settings).await;
        // Events are appended straight to the log under a name with no
        // actor, so nothing else writes and every id reaches the reader.

        let _stuck = stuck_client(app.port, &app.admin_key).await;
        let mut reader = app.ws(&format!("/ws?apikey={}&events=incoming", app.admin_key)).await;
        // A client joins the hub before its 101 goes out, so both count now.
        assert_eq!(app.hub.stats().connections.load(Ordering::Relaxed), 2);

        // 24 MB of events, far more than the stuck client's queue and socket
        // buffers hold, in 200 KB commits a reading client keeps up with.
        let batches = 120;
        let per_batch = 100;
        let sampling = Arc::new(AtomicBool::new(true));
        let sampler = {
            let hub = app.hub.clone();
            let sampling = sampling.clone();
            tokio::spawn(async move {
                let mut peak = 0;
                while sampling.load(Ordering::Relaxed) {
                    peak = peak.max(hub.stats().queued_bytes.load(Ordering::Relaxed));
                    // pacing only: how often the sampler looks; the result is decided by the peak over every batch
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                peak.max(hub.stats().queued_bytes.load(Ordering::Relaxed))
            })
        };
        // Each batch must reach the reader before the next one goes out: if
        // the publisher ever waited on the stuck client, a batch would stall
        // until that client is dropped (30 s) and miss its deadline.
        let mut ids = Vec::new();
        for _ in 0..batches {
            append_messages(&app.log, "alpha", per_batch, per_batch, 2000).await;
            let got = reader
                .events_until(Duration::from_secs(10), |e| e.len() == per_batch)
                .await;
            ids.extend(got.iter().map(|e| e["id"].as_i64().expect("id")));
        }
        assert_eq!(ids.len(), batches * per_batch);
        assert!(ids.windows(2).all(|w| w[1] == w[0] + 1), "every event, in order");

        // The stuck connection hit its queue limit instead of growing.
        assert!(app.hub.stats().lagged_connections.load(Ordering::Relaxed) >= 1);
        sampling.store(false, Ordering::Relaxed);
        let peak = sampler.await.expect("sampler");
        assert!(peak <= 2 * limit, "queued bytes peaked at {peak}, limit {limit} per connection");

        reader.close().await;
        app.stop().await;
    }
}
