//! The generic client core: C WebSocket connections to one URL.
//!
//! [`Pool::open`] connects them (spread over loopback source addresses,
//! with bounded concurrency and an optional rate), then each connection is
//! one small task that reads frames and records them into the shared
//! [`Stats`]. The pool steers every connection at once through a
//! [`Phase`] broadcast on a watch channel: keep reading, stall (stop reading
//! without closing), send a WebSocket ping, or close. Nothing here knows
//! switchboard: any server that sends one JSON text frame per event works.

use std::{
    net::{IpAddr, SocketAddr},
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc,
    },
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use anyhow::{bail, Context};
use futures_util::{SinkExt, StreamExt};
use serde::Serialize;
use tokio::{
    net::{TcpSocket, TcpStream},
    sync::{watch, Notify, Semaphore},
    task::JoinSet,
};
use tokio_tungstenite::{
    tungstenite::{
        client::IntoClientRequest,
        http::{HeaderName, HeaderValue},
        protocol::WebSocketConfig,
        Message,
    },
    WebSocketStream,
};

use crate::{
    addr::SourceAddrs,
    frame::{FrameFormat, Parsed},
    stats::Stats,
};

/// How a pool connects.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// `ws://host:port/path?query`.
    pub url: String,
    /// Extra request headers (`name: value`), e.g. credentials.
    pub headers: Vec<(String, String)>,
    pub connections: usize,
    /// Number of 127.0.0.x source addresses; `None`: one per 20,000
    /// connections on a loopback target, none otherwise.
    pub source_addrs: Option<u8>,
    /// Handshakes in flight at once.
    pub connect_concurrency: usize,
    /// New connections per second; `None`: as fast as the concurrency allows.
    pub connect_rate: Option<f64>,
    /// Longest a TCP connect plus handshake may take.
    pub connect_timeout: Duration,
    /// Bytes of the per-connection read buffer (allocated up front by
    /// tungstenite: 4 KiB keeps 50,000 connections cheap; one busy
    /// connection reads faster with more).
    pub read_buffer: usize,
    /// Every n-th connection (index multiple of n) stops reading on
    /// [`Phase::Stall`]; `None`: none do.
    pub stall_every: Option<usize>,
    /// SO_RCVBUF of the connections that will stall, set before connecting
    /// (a small window, like a slow mobile client's, makes the server's side
    /// fill sooner); `None`: the kernel default.
    pub stall_rcvbuf: Option<u32>,
    pub format: FrameFormat,
    /// Print connect progress to stderr.
    pub progress: bool,
}

impl ClientConfig {
    /// Defaults for `connections` connections to `url`.
    pub fn new(url: String, connections: usize) -> ClientConfig {
        ClientConfig {
            url,
            headers: Vec::new(),
            connections,
            source_addrs: None,
            connect_concurrency: 200,
            connect_rate: None,
            connect_timeout: Duration::from_secs(10),
            read_buffer: 4096,
            stall_every: None,
            stall_rcvbuf: None,
            format: FrameFormat::default(),
            progress: true,
        }
    }
}

/// What every connection should be doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    Read,
    /// Stalling connections stop reading (their socket stays open, so the
    /// server's writes back up); the others keep reading.
    Stall,
    /// Send one WebSocket ping (the number only makes each request new).
    Ping(u32),
    /// Close and end.
    Close,
}

/// How the connecting went.
#[derive(Debug, Clone, Serialize)]
pub struct ConnectReport {
    pub attempted: usize,
    pub connected: u64,
    pub failed: u64,
    pub timed_out: u64,
    /// From the first connect to the last handshake answered, in seconds.
    pub seconds: f64,
    /// Handshakes completed per second over that time.
    pub per_sec: f64,
    /// Source addresses used (0: the kernel chose).
    pub source_addrs: u8,
}

/// Open connections and the means to steer them.
pub struct Pool {
    phase: watch::Sender<Phase>,
    tasks: JoinSet<()>,
    pings: u32,
    pub stats: Arc<Stats>,
    pub connect: ConnectReport,
}

/// How long a connection waits for the server's answer to its close.
const CLOSE_WAIT: Duration = Duration::from_secs(2);

impl Pool {
    /// Opens `config.connections` connections and returns once every
    /// attempt has succeeded or failed. Failures are counted in `stats`, not
    /// returned: a benchmark reports them.
    pub async fn open(config: ClientConfig, stats: Arc<Stats>) -> anyhow::Result<Pool> {
        let target = resolve(&config.url).await?;
        let spread = SourceAddrs::plan(target.ip(), config.connections, config.source_addrs)
            .map_err(anyhow::Error::msg)?;
        // Checked once here, so a bad URL or header fails loudly instead of
        // as C connect errors.
        build_request(&config)?;
        let (phase, _) = watch::channel(Phase::Read);
        let config = Arc::new(config);
        let permits = Arc::new(Semaphore::new(config.connect_concurrency.max(1)));
        let finished = Arc::new(AtomicUsize::new(0));
        let all_finished = Arc::new(Notify::new());
        let ws_config = WebSocketConfig::default()
            .read_buffer_size(config.read_buffer)
            .write_buffer_size(0)
            .max_message_size(Some(64 << 20));
        let mut tasks = JoinSet::new();
        let start = Instant::now();
        let mut last_progress = start;
        for conn in 0..config.connections {
            if let Some(rate) = config.connect_rate.filter(|r| *r > 0.0) {
                tokio::time::sleep_until(
                    (start + Duration::from_secs_f64(conn as f64 / rate)).into(),
                )
                .await;
            }
            // unwrap: the semaphore is never closed.
            #[allow(clippy::unwrap_used)]
            let permit = permits.clone().acquire_owned().await.unwrap();
            if config.progress && last_progress.elapsed() >= Duration::from_secs(2) {
                last_progress = Instant::now();
                eprintln!(
                    "  connecting: {conn}/{} started, {} open, {} failed",
                    config.connections,
                    stats.open.load(Ordering::Relaxed),
                    stats.connect_failed.load(Ordering::Relaxed)
                        + stats.connect_timeouts.load(Ordering::Relaxed),
                );
            }
            let source = spread.map(|s| s.for_connection(conn));
            let (config, stats, finished, all_finished) = (
                config.clone(),
                stats.clone(),
                finished.clone(),
                all_finished.clone(),
            );
            let phase = phase.subscribe();
            let stalls = config.stall_every.is_some_and(|n| n > 0 && conn % n == 0);
            let rcvbuf = if stalls { config.stall_rcvbuf } else { None };
            tasks.spawn(async move {
                let attempt = tokio::time::timeout(
                    config.connect_timeout,
                    connect_one(&config, target, source.map(IpAddr::V4), rcvbuf, ws_config),
                )
                .await;
                drop(permit);
                let ws = match attempt {
                    Ok(Ok(ws)) => {
                        stats.connected.fetch_add(1, Ordering::Relaxed);
                        Some(ws)
                    }
                    Ok(Err(err)) => {
                        stats.connect_failed.fetch_add(1, Ordering::Relaxed);
                        stats.sample(format!("connect failed: {err:#}"));
                        None
                    }
                    Err(_) => {
                        stats.connect_timeouts.fetch_add(1, Ordering::Relaxed);
                        stats.sample(format!(
                            "connect timed out after {:?}",
                            config.connect_timeout
                        ));
                        None
                    }
                };
                if finished.fetch_add(1, Ordering::AcqRel) + 1 == config.connections {
                    all_finished.notify_one();
                }
                if let Some(ws) = ws {
                    drive(ws, conn, stalls, phase, &stats, &config.format).await;
                }
            });
        }
        if config.connections > 0 {
            all_finished.notified().await;
        }
        let seconds = start.elapsed().as_secs_f64();
        let snap = stats.snapshot();
        let connect = ConnectReport {
            attempted: config.connections,
            connected: snap.connected,
            failed: snap.connect_failed,
            timed_out: snap.connect_timeouts,
            seconds,
            per_sec: if seconds > 0.0 {
                snap.connected as f64 / seconds
            } else {
                0.0
            },
            source_addrs: spread.map_or(0, |s| s.count()),
        };
        Ok(Pool {
            phase,
            tasks,
            pings: 0,
            stats,
            connect,
        })
    }

    /// Tells every connection what to do next.
    pub fn set(&self, phase: Phase) {
        self.phase.send_replace(phase);
    }

    /// Pings every reading connection and waits (up to `wait`) for the
    /// pongs; returns how many came back. Any WebSocket server answers, so
    /// this proves idle connections are alive on any server.
    pub async fn ping_all(&mut self, wait: Duration) -> u64 {
        let before = self.stats.pongs.load(Ordering::Relaxed);
        let expected = self.stats.open.load(Ordering::Relaxed);
        self.pings += 1;
        self.set(Phase::Ping(self.pings));
        let deadline = Instant::now() + wait;
        loop {
            let got = self.stats.pongs.load(Ordering::Relaxed) - before;
            if got >= expected || Instant::now() >= deadline {
                self.set(Phase::Read);
                return got;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Closes every connection (a close handshake where the connection is
    /// reading; a plain drop where it stalled) and waits for them to end.
    pub async fn close(mut self) {
        self.set(Phase::Close);
        let deadline = tokio::time::sleep(CLOSE_WAIT + Duration::from_secs(1));
        tokio::pin!(deadline);
        loop {
            tokio::select! {
                next = self.tasks.join_next() => if next.is_none() { return },
                _ = &mut deadline => break,
            }
        }
        self.tasks.shutdown().await;
    }
}

/// The first address the URL's host resolves to.
async fn resolve(url: &str) -> anyhow::Result<SocketAddr> {
    let request = url
        .into_client_request()
        .with_context(|| format!("not a WebSocket URL: {url}"))?;
    let uri = request.uri();
    if uri.scheme_str() != Some("ws") {
        bail!("only ws:// URLs are supported (no TLS): {url}");
    }
    let host = uri.host().context("the URL has no host")?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let port = uri.port_u16().unwrap_or(80);
    let mut addrs = tokio::net::lookup_host((host, port))
        .await
        .with_context(|| format!("while resolving {host}"))?;
    addrs
        .next()
        .with_context(|| format!("{host} resolves to no address"))
}

fn build_request(
    config: &ClientConfig,
) -> anyhow::Result<tokio_tungstenite::tungstenite::handshake::client::Request> {
    let mut request = config.url.as_str().into_client_request()?;
    for (name, value) in &config.headers {
        request.headers_mut().insert(
            HeaderName::from_bytes(name.as_bytes())
                .with_context(|| format!("bad header name {name}"))?,
            HeaderValue::from_str(value).with_context(|| format!("bad value for header {name}"))?,
        );
    }
    Ok(request)
}

async fn connect_one(
    config: &ClientConfig,
    target: SocketAddr,
    source: Option<IpAddr>,
    rcvbuf: Option<u32>,
    ws_config: WebSocketConfig,
) -> anyhow::Result<WebSocketStream<TcpStream>> {
    let socket = if target.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    if let Some(bytes) = rcvbuf {
        socket.set_recv_buffer_size(bytes)?;
    }
    if let Some(source) = source {
        // Let connect() choose the port (unique per 4-tuple) instead of
        // bind(): bind with port 0 searches one half of the ephemeral range
        // first and slows to a crawl once ~14k ports of an address are
        // taken. Best effort: without it the spread still works, slower.
        let _ = nix::sys::socket::setsockopt(
            &socket,
            nix::sys::socket::sockopt::IpBindAddressNoPort,
            &true,
        );
        socket
            .bind(SocketAddr::new(source, 0))
            .with_context(|| format!("bind {source}"))?;
    }
    let stream = socket.connect(target).await.context("tcp")?;
    stream.set_nodelay(true)?;
    let (ws, _) = tokio_tungstenite::client_async_with_config(
        build_request(config)?,
        stream,
        Some(ws_config),
    )
    .await
    .context("handshake")?;
    Ok(ws)
}

/// Microseconds since the Unix epoch, now.
fn now_us() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as i64)
}

/// One connection's life after its handshake.
async fn drive(
    mut ws: WebSocketStream<TcpStream>,
    conn: usize,
    stalls: bool,
    mut phase: watch::Receiver<Phase>,
    stats: &Stats,
    format: &FrameFormat,
) {
    stats.open.fetch_add(1, Ordering::Relaxed);
    let mut stalled = false;
    loop {
        tokio::select! {
            changed = phase.changed() => {
                if changed.is_err() {
                    break; // the pool is gone
                }
                let now = *phase.borrow_and_update();
                match now {
                    Phase::Close => {
                        if !stalled {
                            let _ = tokio::time::timeout(CLOSE_WAIT, close(&mut ws)).await;
                        }
                        break;
                    }
                    Phase::Stall if stalls => stalled = true,
                    Phase::Ping(_) if !stalled => {
                        if let Err(err) = ws.send(Message::Ping(Default::default())).await {
                            stats.io_errors.fetch_add(1, Ordering::Relaxed);
                            stats.sample(format!("ping: {err}"));
                            break;
                        }
                    }
                    _ => {}
                }
            }
            message = ws.next(), if !stalled => match message {
                Some(Ok(Message::Text(text))) => {
                    let received = now_us();
                    match format.parse(&text) {
                        Parsed::Control => {
                            stats.control.fetch_add(1, Ordering::Relaxed);
                        }
                        Parsed::Event { timestamp_us, id } => {
                            stats.record_event(conn, text.len(), timestamp_us.map(|t| received - t), id);
                        }
                    }
                }
                Some(Ok(Message::Binary(_))) => {
                    stats.binary.fetch_add(1, Ordering::Relaxed);
                }
                Some(Ok(Message::Pong(_))) => {
                    stats.pongs.fetch_add(1, Ordering::Relaxed);
                }
                Some(Ok(Message::Ping(_) | Message::Frame(_))) => {}
                Some(Ok(Message::Close(frame))) => {
                    match frame {
                        Some(frame) => stats.record_close(frame.code.into(), &frame.reason),
                        None => stats.record_close(1005, ""),
                    }
                    break;
                }
                Some(Err(err)) => {
                    stats.io_errors.fetch_add(1, Ordering::Relaxed);
                    stats.sample(format!("read: {err}"));
                    break;
                }
                None => {
                    stats.eof.fetch_add(1, Ordering::Relaxed);
                    stats.sample("the server dropped a connection without a close frame".into());
                    break;
                }
            },
        }
    }
    stats.open.fetch_sub(1, Ordering::Relaxed);
}

/// Our side of a close handshake: send the close, then read (and drop)
/// whatever is still in flight until the server's close arrives.
async fn close(ws: &mut WebSocketStream<TcpStream>) {
    if ws.close(None).await.is_err() {
        return;
    }
    while let Some(Ok(message)) = ws.next().await {
        if matches!(message, Message::Close(_)) {
            break;
        }
    }
}

/// `url` with `params` added to its query string (values percent-encoded).
pub fn with_query(url: &str, params: &[(&str, &str)]) -> String {
    let mut out = url.to_string();
    for (key, value) in params {
        out.push(if out.contains('?') { '&' } else { '?' });
        out.push_str(key);
        out.push('=');
        out.push_str(&percent_encode(value));
    }
    out
}

fn percent_encode(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for byte in value.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'.' | b'~' | b',') {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_parameters_are_appended_and_encoded() {
        assert_eq!(
            with_query(
                "ws://127.0.0.1:8080/ws",
                &[("apikey", "a b&c"), ("instances", "x,y")]
            ),
            "ws://127.0.0.1:8080/ws?apikey=a%20b%26c&instances=x,y"
        );
        assert_eq!(
            with_query("ws://h/ws?events=message", &[("since", "5")]),
            "ws://h/ws?events=message&since=5"
        );
    }

    /// A tiny WebSocket server on a free loopback port: each connection
    /// gets `script` run on it.
    async fn serve<F, Fut>(script: F) -> String
    where
        F: Fn(WebSocketStream<TcpStream>) -> Fut + Send + Sync + 'static,
        Fut: std::future::Future<Output = ()> + Send + 'static,
    {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let script = Arc::new(script);
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let script = script.clone();
                tokio::spawn(async move {
                    if let Ok(ws) = tokio_tungstenite::accept_async(stream).await {
                        script(ws).await;
                    }
                });
            }
        });
        format!("ws://127.0.0.1:{port}/ws")
    }

    fn quiet(url: String, connections: usize) -> ClientConfig {
        let mut config = ClientConfig::new(url, connections);
        config.progress = false;
        config
    }

    #[tokio::test]
    async fn events_control_frames_and_close_codes_are_counted() {
        let url = serve(|mut ws| async move {
            for id in 1..=3 {
                let stamp = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
                let frame = format!(r#"{{"id":{id},"timestamp":"{stamp}","data":{{"type":"x"}}}}"#);
                ws.send(Message::text(frame)).await.unwrap();
            }
            ws.send(Message::text(r#"{"type":"pong","data":{}}"#))
                .await
                .unwrap();
            let close = tokio_tungstenite::tungstenite::protocol::CloseFrame {
                code: 4000.into(),
                reason: "lagging".into(),
            };
            let _ = ws.close(Some(close)).await;
        })
        .await;
        let stats = Arc::new(Stats::new(1));
        let pool = Pool::open(quiet(url, 2), stats.clone()).await.unwrap();
        assert_eq!(pool.connect.connected, 2);
        // Wait for both connections to read everything and see the close.
        for _ in 0..500 {
            if stats.snapshot().closes.get(&4000) == Some(&2) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let snap = stats.snapshot();
        assert_eq!((snap.events, snap.control, snap.untimed), (6, 2, 0));
        assert_eq!(snap.closes.get(&4000), Some(&2));
        let latencies = stats.take_latencies();
        assert_eq!(latencies.len(), 6);
        assert!(latencies.max() < 5_000_000, "loopback latency under 5 s");
        pool.close().await;
    }

    #[tokio::test]
    async fn idle_connections_answer_pings_and_close_cleanly() {
        let url = serve(|mut ws| async move {
            // Reading answers pings; the loop ends at the client's close.
            while let Some(Ok(message)) = ws.next().await {
                if message.is_close() {
                    break;
                }
            }
        })
        .await;
        let stats = Arc::new(Stats::new(1));
        let mut pool = Pool::open(quiet(url, 3), stats.clone()).await.unwrap();
        assert_eq!(pool.ping_all(Duration::from_secs(5)).await, 3);
        pool.close().await;
        let errors = stats.errors();
        assert_eq!(errors.total(), 0, "{errors:?}");
        assert_eq!(stats.snapshot().open, 0);
    }

    #[tokio::test]
    async fn a_refused_connect_is_counted_not_returned() {
        // Bind then drop a listener: its port now refuses connections.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let stats = Arc::new(Stats::new(1));
        let pool = Pool::open(quiet(format!("ws://127.0.0.1:{port}/"), 2), stats.clone())
            .await
            .unwrap();
        assert_eq!((pool.connect.connected, pool.connect.failed), (0, 2));
        assert!(stats.error_samples()[0].contains("connect failed"));
        pool.close().await;
    }

    #[tokio::test]
    async fn only_plain_websocket_urls_resolve() {
        assert!(resolve("wss://127.0.0.1/ws").await.is_err());
        assert!(resolve("http://127.0.0.1/ws").await.is_err());
        let addr = resolve("ws://127.0.0.1:9/ws").await.unwrap();
        assert_eq!(addr, "127.0.0.1:9".parse().unwrap());
    }
}
