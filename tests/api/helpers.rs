//! Test harness: a real server on a random port with a fresh database
//! (a new PostgreSQL database, or a SQLite file in a temporary directory),
//! a REST client, and a real WebSocket client.

use std::{
    path::PathBuf,
    time::{Duration, Instant},
};

use futures_util::{SinkExt, StreamExt};
use secrecy::{ExposeSecret, SecretString};
use serde_json::{json, Value};
use sqlx::Connection;
use switchboard::{
    app::{AppHandle, Application},
    config::Settings,
    domain::InstanceName,
    event::data::{DeliveryData, DeliveryStatus, Direction, MessageData, Payload},
    hub::Hub,
    store::{EventLog, Job},
};
use tokio::net::TcpStream;
use tokio_tungstenite::{
    tungstenite::{self, protocol::frame::coding::CloseCode, Message},
    MaybeTlsStream, WebSocketStream,
};

/// Which database a test runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Postgres,
    Sqlite,
}

/// Runs each listed test once on PostgreSQL and once on SQLite, as
/// `<test>::on_postgres` and `<test>::on_sqlite`.
#[macro_export]
macro_rules! on_both_backends {
    ($(async fn $name:ident($backend:ident: Backend) $body:block)*) => {
        $(
            mod $name {
                #[allow(unused_imports)]
                use super::*;

                async fn run($backend: $crate::helpers::Backend) $body

                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn on_postgres() {
                    run($crate::helpers::Backend::Postgres).await
                }

                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn on_sqlite() {
                    run($crate::helpers::Backend::Sqlite).await
                }
            }
        )*
    };
}

/// The PostgreSQL server tests create their databases on. The test script
/// sets it; the default matches a local server with trust auth.
fn postgres_admin_url() -> String {
    std::env::var("TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned())
}

/// A database that outlives server restarts within one test.
pub struct TestDb {
    /// PostgreSQL: the URL of the test's own database (through the proxy,
    /// when there is one).
    pub url: Option<String>,
    /// PostgreSQL behind a proxy the test can cut (see `TestDb::behind_proxy`).
    pub proxy: Option<crate::proxy::TcpProxy>,
    /// The data directory (SQLite file, admin key).
    pub dir: tempfile::TempDir,
}

impl TestDb {
    pub async fn new(backend: Backend) -> TestDb {
        match backend {
            Backend::Sqlite => TestDb {
                url: None,
                dir: tempfile::tempdir().expect("create a temporary directory"),
                proxy: None,
            },
            Backend::Postgres => TestDb::on_server(&postgres_admin_url()).await,
        }
    }

    /// A fresh PostgreSQL database on the server at `admin` (a URL of one
    /// of its databases that the test may create databases through).
    pub async fn on_server(admin: &str) -> TestDb {
        let dir = tempfile::tempdir().expect("create a temporary directory");
        let name = format!("sbtest_{}", uuid::Uuid::new_v4().simple());
        let mut conn = sqlx::PgConnection::connect(admin)
            .await
            .unwrap_or_else(|e| {
                panic!(
                    "PostgreSQL must be reachable at {admin} for the tests \
                 (scripts/test.sh provisions it): {e}"
                )
            });
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&mut conn)
            .await
            .expect("create the test database");
        TestDb {
            url: Some(replace_database(admin, &name)),
            dir,
            proxy: None,
        }
    }

    /// A fresh PostgreSQL database that the server reaches through a proxy,
    /// so the test can make the database unavailable and bring it back.
    pub async fn behind_proxy() -> TestDb {
        let mut db = TestDb::new(Backend::Postgres).await;
        let url = db.url.clone().expect("a PostgreSQL URL");
        let target = postgres_address(&url).await;
        let proxy = crate::proxy::TcpProxy::start(target).await;
        db.url = Some(replace_host_port(&url, &proxy.addr.to_string()));
        db.proxy = Some(proxy);
        db
    }

    pub fn proxy(&self) -> &crate::proxy::TcpProxy {
        self.proxy
            .as_ref()
            .expect("created with TestDb::behind_proxy")
    }
}

/// The socket address of the server in a postgres:// URL.
async fn postgres_address(url: &str) -> std::net::SocketAddr {
    let after_scheme = &url[url.find("://").map_or(0, |i| i + 3)..];
    let authority = after_scheme.split(['/', '?']).next().unwrap_or("");
    let host_port = authority.rsplit('@').next().unwrap_or(authority);
    let host_port = if host_port.contains(':') {
        host_port.to_owned()
    } else {
        format!("{host_port}:5432")
    };
    let mut addrs = tokio::net::lookup_host(host_port.as_str())
        .await
        .expect("resolve the PostgreSQL host");
    addrs.next().expect("an address")
}

/// The same URL pointing at another host:port.
fn replace_host_port(url: &str, host_port: &str) -> String {
    let scheme_end = url.find("://").map_or(0, |i| i + 3);
    let rest = &url[scheme_end..];
    let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
    let authority = &rest[..authority_end];
    let userinfo = authority.rfind('@').map(|i| &authority[..=i]).unwrap_or("");
    format!(
        "{}{userinfo}{host_port}{}",
        &url[..scheme_end],
        &rest[authority_end..]
    )
}

/// The same server URL with another database name.
fn replace_database(url: &str, database: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((base, query)) => (base, Some(query)),
        None => (url, None),
    };
    let scheme_end = base.find("://").map_or(0, |i| i + 3);
    let host_part = match base[scheme_end..].find('/') {
        Some(slash) => &base[..scheme_end + slash],
        None => base,
    };
    match query {
        Some(query) => format!("{host_part}/{database}?{query}"),
        None => format!("{host_part}/{database}"),
    }
}

/// A running server.
pub struct TestApp {
    pub port: u16,
    pub admin_key: String,
    pub http: reqwest::Client,
    pub log: EventLog,
    pub hub: std::sync::Arc<Hub>,
    handle: AppHandle,
    join: tokio::task::JoinHandle<anyhow::Result<()>>,
}

/// The admin key of the tests (a configured key needs 32 characters).
pub const TEST_ADMIN_KEY: &str = "test-admin-key-0123456789abcdef-0123";

/// Settings every test starts from: loopback, port 0, one worker, fast
/// modem restarts, a known admin key, webhooks allowed onto loopback.
pub fn test_settings(db: &TestDb) -> Settings {
    let mut settings = Settings::defaults().expect("defaults");
    settings.data_dir = PathBuf::from(db.dir.path());
    settings.http.address = "127.0.0.1".into();
    settings.http.port = 0;
    settings.http.workers = 1;
    settings.auth.api_key = Some(SecretString::from(TEST_ADMIN_KEY.to_owned()));
    // The webhook receivers of the tests listen on loopback, which
    // webhooks may only reach when the operator says so.
    settings.webhooks.allowed_networks = vec![
        "127.0.0.0/8".parse().expect("a network"),
        "::1/128".parse().expect("a network"),
    ];
    settings.database.url = db.url.clone().map(SecretString::from);
    settings.database.max_connections = 4;
    settings.modem.restart_backoff_initial_ms = 50;
    settings.modem.restart_backoff_max_ms = 500;
    settings
}

/// The in-process servers log to the test's own output, which the test
/// harness shows only for a test that fails: its warnings (a lease not
/// renewed, a modem actor restarted) say what the server saw.
/// `SWITCHBOARD_TEST_LOG` sets the filter (default `warn`).
fn log_to_test_output() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let filter = std::env::var("SWITCHBOARD_TEST_LOG").unwrap_or_else(|_| "warn".into());
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
            .with_test_writer()
            .with_ansi(false)
            .try_init();
    });
}

impl TestApp {
    /// A server on a fresh database with the test settings.
    pub async fn spawn(db: &TestDb) -> TestApp {
        Self::spawn_with(test_settings(db)).await
    }

    pub async fn spawn_with(settings: Settings) -> TestApp {
        log_to_test_output();
        let app = Application::build(settings)
            .await
            .expect("build the application");
        let port = app.port();
        let admin_key = app.admin_key().expose_secret().to_owned();
        let log = app.log().clone();
        let hub = app.hub().clone();
        let handle = app.handle();
        let join = tokio::spawn(app.run_until_stopped());
        TestApp {
            port,
            admin_key,
            http: http_client(),
            log,
            hub,
            handle,
            join,
        }
    }

    /// Stops the server gracefully and waits until it has.
    pub async fn stop(self) {
        self.handle.stop();
        match self.join.await {
            Ok(result) => result.expect("server stopped cleanly"),
            // The server's own panic message, first, where a log's tail
            // shows it.
            Err(err) => panic!("the server task failed while stopping: {err}"),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    pub fn ws_url(&self, path_and_query: &str) -> String {
        format!("ws://127.0.0.1:{}{path_and_query}", self.port)
    }

    /// A request with the admin key.
    pub fn admin(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        self.with_key(method, path, &self.admin_key)
    }

    pub fn with_key(
        &self,
        method: reqwest::Method,
        path: &str,
        key: &str,
    ) -> reqwest::RequestBuilder {
        self.http
            .request(method, self.url(path))
            .header("apikey", key)
    }

    /// Creates an instance on the simulator; returns its key.
    pub async fn create_instance(&self, name: &str, driver: Value) -> String {
        let response = self
            .admin(reqwest::Method::POST, "/instance/create")
            .json(&json!({ "instanceName": name, "driver": driver }))
            .send()
            .await
            .expect("create request");
        let status = response.status();
        let body: Value = response.json().await.expect("create body");
        assert_eq!(status, 201, "create {name}: {body}");
        body["hash"].as_str().expect("instance key").to_owned()
    }

    /// Sends a text as the admin; returns the message id.
    pub async fn send_text(&self, instance: &str, number: &str, text: &str) -> String {
        let response = self
            .admin(
                reqwest::Method::POST,
                &format!("/message/sendText/{instance}"),
            )
            .json(&json!({ "number": number, "text": text }))
            .send()
            .await
            .expect("send request");
        let status = response.status();
        let body: Value = response.json().await.expect("send body");
        assert_eq!(status, 201, "sendText: {body}");
        body["id"].as_str().expect("message id").to_owned()
    }

    /// Reads the whole log (as the admin) through `GET /events`, page by page.
    pub async fn read_log(&self, query: &str) -> Vec<Value> {
        let mut events = Vec::new();
        let mut since = 0;
        loop {
            let body: Value = self
                .admin(
                    reqwest::Method::GET,
                    &format!("/events?since={since}&limit=1000{query}"),
                )
                .send()
                .await
                .expect("events request")
                .json()
                .await
                .expect("events body");
            let page = body["events"].as_array().expect("events array").clone();
            since = body["next"].as_i64().expect("next");
            let more = body["more"].as_bool().expect("more");
            events.extend(page);
            if !more {
                return events;
            }
        }
    }

    /// GETs a path with the admin key and returns the JSON body.
    pub async fn get_json(&self, path: &str) -> Value {
        self.admin(reqwest::Method::GET, path)
            .send()
            .await
            .expect("send")
            .json()
            .await
            .expect("a JSON body")
    }

    /// Opens a WebSocket; panics if the handshake fails.
    pub async fn ws(&self, path_and_query: &str) -> WsClient {
        let (stream, response) = tokio_tungstenite::connect_async(self.ws_url(path_and_query))
            .await
            .unwrap_or_else(|e| panic!("connect {path_and_query}: {e}"));
        assert_eq!(response.status(), 101);
        WsClient { stream }
    }
}

/// A WebSocket client with helpers that fail the test on timeouts.
pub struct WsClient {
    pub stream: WebSocketStream<MaybeTlsStream<TcpStream>>,
}

/// What the server sent next.
#[derive(Debug)]
pub enum Received {
    Json(Value),
    Closed(Option<(u16, String)>),
}

impl WsClient {
    /// The next text frame as JSON, or the close; pings are answered.
    pub async fn next(&mut self, timeout: Duration) -> Received {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let message = tokio::time::timeout(left, self.stream.next())
                .await
                .unwrap_or_else(|_| panic!("nothing received within {timeout:?}"));
            match message {
                Some(Ok(Message::Text(text))) => {
                    return Received::Json(serde_json::from_str(&text).expect("server sent JSON"))
                }
                Some(Ok(Message::Close(frame))) => {
                    return Received::Closed(
                        frame.map(|f| (u16::from(f.code), f.reason.to_string())),
                    )
                }
                Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => continue,
                Some(Ok(Message::Binary(_))) => panic!("unexpected binary frame"),
                // A killed server resets the connection: that is a close too.
                Some(Err(
                    tungstenite::Error::ConnectionClosed
                    | tungstenite::Error::AlreadyClosed
                    | tungstenite::Error::Io(_)
                    | tungstenite::Error::Protocol(
                        tungstenite::error::ProtocolError::ResetWithoutClosingHandshake,
                    ),
                ))
                | None => return Received::Closed(None),
                Some(Err(err)) => panic!("websocket error: {err}"),
            }
        }
    }

    /// The next JSON frame; fails if the connection closes instead.
    pub async fn json(&mut self, timeout: Duration) -> Value {
        match self.next(timeout).await {
            Received::Json(value) => value,
            Received::Closed(close) => panic!("closed instead of a frame: {close:?}"),
        }
    }

    /// The next control message (`{"type": ...}`), skipping events.
    pub async fn control(&mut self, timeout: Duration) -> Value {
        loop {
            let value = self.json(timeout).await;
            if value.get("type").is_some() {
                return value;
            }
        }
    }

    /// The next event envelope, skipping control messages (which have a
    /// `type`; they carry `event` too, for clients of other systems).
    pub async fn event(&mut self, timeout: Duration) -> Value {
        loop {
            let value = self.json(timeout).await;
            if value.get("event").is_some() && value.get("type").is_none() {
                return value;
            }
        }
    }

    /// Collects events until `done` says stop; fails on timeout.
    pub async fn events_until(
        &mut self,
        timeout: Duration,
        mut done: impl FnMut(&[Value]) -> bool,
    ) -> Vec<Value> {
        let deadline = Instant::now() + timeout;
        let mut events = Vec::new();
        while !done(&events) {
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(
                !left.is_zero(),
                "timed out; got {} events: {events:?}",
                events.len()
            );
            events.push(self.event(left).await);
        }
        events
    }

    /// Waits for the close and returns its code and reason.
    pub async fn closed(&mut self, timeout: Duration) -> (u16, String) {
        loop {
            match self.next(timeout).await {
                Received::Closed(Some(close)) => return close,
                Received::Closed(None) => panic!("closed without a close frame"),
                Received::Json(_) => continue,
            }
        }
    }

    pub async fn send_json(&mut self, value: Value) {
        self.stream
            .send(Message::Text(value.to_string().into()))
            .await
            .expect("send a frame");
    }

    /// Asserts that the next event is the marker with log id `marker` (see
    /// [`append_marker`]): whatever the client should not get and was
    /// committed before the marker would have come first.
    pub async fn assert_next_is_marker(&mut self, marker: i64) {
        let event = self.event(WAIT).await;
        assert_eq!(
            event["id"].as_i64(),
            Some(marker),
            "expected nothing before the marker {marker}, got {event}"
        );
    }

    pub async fn close(mut self) {
        let _ = self
            .stream
            .close(Some(tungstenite::protocol::CloseFrame {
                code: CloseCode::Normal,
                reason: "bye".into(),
            }))
            .await;
    }
}

/// The simulator with fast, fixed delays and no random traffic.
pub fn quick_simulator() -> Value {
    json!({ "kind": "simulator", "sent_delay_ms": 20, "delivered_delay_ms": 20, "reply_delay_ms": 20 })
}

/// Appends `count` incoming messages of `size` bytes, `per_job` at a time.
pub async fn append_messages(
    log: &EventLog,
    instance: &str,
    count: usize,
    per_job: usize,
    size: usize,
) {
    let name = InstanceName::parse(instance).expect("valid");
    let body = "m".repeat(size);
    let mut left = count;
    while left > 0 {
        let n = left.min(per_job);
        let events = (0..n)
            .map(|i| {
                MessageData {
                    id: format!("{left}-{i}"),
                    direction: Direction::Incoming,
                    from: "+15550000001".into(),
                    to: "+15550000002".into(),
                    kind: "text".into(),
                    content: body.clone(),
                    timestamp: 0,
                    parts: 1,
                }
                .into_event(&name)
            })
            .collect();
        log.append(Job {
            events,
            changes: Vec::new(),
            fence: None,
        })
        .await
        .expect("append");
        left -= n;
    }
}

/// Appends one event straight to the log and returns its id. It marks a
/// point in the streams: a client whose next event is the marker got
/// nothing it should not have among what was committed before it, which
/// proves a silence by order rather than by a pause.
pub async fn append_marker(log: &EventLog, instance: &str, payload: impl Payload) -> i64 {
    let name = InstanceName::parse(instance).expect("valid");
    let committed = log
        .append(Job {
            events: vec![payload.into_event(&name)],
            changes: Vec::new(),
            fence: None,
        })
        .await
        .expect("append the marker");
    committed.first().expect("the marker's id").id
}

/// A message to use as a marker.
pub fn marker_message(direction: Direction, id: &str) -> MessageData {
    MessageData {
        id: id.into(),
        direction,
        from: "+15550000009".into(),
        to: "+15550000008".into(),
        kind: "text".into(),
        content: format!("marker {id}"),
        timestamp: 0,
        parts: 1,
    }
}

/// A delivery update to use as a marker.
pub fn marker_delivery(id: &str) -> DeliveryData {
    DeliveryData {
        id: id.into(),
        status: DeliveryStatus::Sent,
        to: "+15550000008".into(),
        timestamp: 0,
        error: None,
        parts_done: None,
        parts: None,
    }
}

/// Waits until the log holds the whole story of each text sent on the
/// simulator, given as (message id, text): its delivery and its echo. After
/// that the simulator has nothing more to say about them.
pub async fn wait_delivered_and_echoed(app: &TestApp, texts: &[(&str, &str)]) {
    wait_for("every text to be delivered and echoed", WAIT, async || {
        let log = app.read_log("&events=message,delivery").await;
        let told = |(id, text): &(&str, &str)| {
            let echo = format!("Echo: {text}");
            log.iter().any(|e| {
                e["event"] == "delivery"
                    && e["data"]["id"] == *id
                    && e["data"]["status"] == "delivered"
            }) && log
                .iter()
                .any(|e| e["event"] == "message" && e["data"]["content"] == echo.as_str())
        };
        if texts.iter().all(told) {
            Ok(())
        } else {
            Err(format!("log: {log:?}"))
        }
    })
    .await
}

/// The usual deadline of a wait. Generous: a loaded CI machine (or one
/// whose PostgreSQL is busy with other work) can take seconds to start an
/// instance's driver under its lease; every wait ends as soon as its
/// condition holds, so a long deadline costs nothing when all is well.
pub const WAIT: Duration = Duration::from_secs(30);

/// How long [`wait_for`] pauses between two looks at its condition.
const POLL_EVERY: Duration = Duration::from_millis(10);

/// What a condition given to [`wait_for`] answers: whether it holds, with
/// the value the caller wanted once it does. `bool` and `Option<T>` say
/// "not yet" plainly; `Result<T, E>` carries what was seen instead (`E`),
/// so that a timeout can tell how far things got.
pub trait Holds {
    type Value;
    /// `Ok` once the condition holds; otherwise what to report on timeout.
    fn holds(self) -> Result<Self::Value, Option<String>>;
}

impl Holds for bool {
    type Value = ();
    fn holds(self) -> Result<(), Option<String>> {
        if self {
            Ok(())
        } else {
            Err(None)
        }
    }
}

impl<T> Holds for Option<T> {
    type Value = T;
    fn holds(self) -> Result<T, Option<String>> {
        self.ok_or(None)
    }
}

impl<T, E: std::fmt::Display> Holds for Result<T, E> {
    type Value = T;
    fn holds(self) -> Result<T, Option<String>> {
        self.map_err(|seen| Some(seen.to_string()))
    }
}

/// Waits until `condition` holds and returns what it gave; every wait of
/// the tests for some state goes through here. The condition is looked at
/// every few milliseconds (a slow look, such as reading a long log, simply
/// takes its time) and the first time it holds ends the wait. When
/// `deadline` passes first, even in the middle of a look that hangs, the
/// test fails naming `what` it waited for and the last thing it saw.
pub async fn wait_for<H: Holds>(
    what: &str,
    deadline: Duration,
    mut condition: impl AsyncFnMut() -> H,
) -> H::Value {
    let started = Instant::now();
    let mut looks = 0u64;
    let mut seen: Option<String> = None;
    let polling = async {
        loop {
            looks += 1;
            match condition().await.holds() {
                Ok(value) => return value,
                Err(note) => seen = note,
            }
            // pacing only: the pause between two looks; the result is decided by the condition.
            tokio::time::sleep(POLL_EVERY).await;
        }
    };
    let outcome = tokio::time::timeout(deadline, polling).await;
    match outcome {
        Ok(value) => value,
        Err(_) => panic!(
            "timed out after {:?} ({looks} looks) waiting for {what}{}",
            started.elapsed(),
            seen.map(|seen| format!("; last seen: {seen}"))
                .unwrap_or_default()
        ),
    }
}

/// The value of a counter or gauge in the server's `/metrics`.
pub async fn metric(app: &TestApp, name: &str) -> u64 {
    let text = app
        .http
        .get(app.url("/metrics"))
        .send()
        .await
        .expect("metrics request")
        .text()
        .await
        .expect("metrics body");
    text.lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(' '))
        .and_then(|value| value.parse().ok())
        .unwrap_or_else(|| panic!("no metric {name} in /metrics:\n{text}"))
}

/// An HTTP client; TLS needs the process's crypto provider installed first.
pub fn http_client() -> reqwest::Client {
    switchboard::app::install_crypto_provider();
    reqwest::Client::new()
}

/// One SSE message as an `EventSource` would see it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SseEvent {
    pub id: Option<String>,
    pub event: Option<String>,
    pub data: String,
}

/// What an SSE stream carried: events, `retry:` values and comments.
#[derive(Debug)]
pub enum SseItem {
    Event(SseEvent),
    Retry(u64),
    Comment(String),
}

/// A minimal SSE reader that follows the WHATWG parsing rules.
pub struct SseClient {
    stream:
        std::pin::Pin<Box<dyn futures_util::Stream<Item = reqwest::Result<bytes::Bytes>> + Send>>,
    buffer: String,
    pending: std::collections::VecDeque<SseItem>,
    current: SseEvent,
    has_data: bool,
}

impl SseClient {
    /// Opens a stream; panics unless the answer is a 200 event stream.
    pub async fn open(
        app: &TestApp,
        path_and_query: &str,
        last_event_id: Option<i64>,
    ) -> SseClient {
        let mut request = app
            .http
            .get(app.url(path_and_query))
            .header("Accept", "text/event-stream");
        if let Some(id) = last_event_id {
            request = request.header("Last-Event-ID", id.to_string());
        }
        let response = request.send().await.expect("sse request");
        assert_eq!(
            response.status(),
            200,
            "{}",
            response.text().await.unwrap_or_default()
        );
        Self::from_response(response)
    }

    pub fn from_response(response: reqwest::Response) -> SseClient {
        assert_eq!(
            response
                .headers()
                .get("content-type")
                .and_then(|v| v.to_str().ok()),
            Some("text/event-stream")
        );
        SseClient {
            stream: Box::pin(response.bytes_stream()),
            buffer: String::new(),
            pending: Default::default(),
            current: SseEvent::default(),
            has_data: false,
        }
    }

    pub async fn next_item(&mut self, timeout: Duration) -> Option<SseItem> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(item) = self.pending.pop_front() {
                return Some(item);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            let chunk = tokio::time::timeout(left, self.stream.next())
                .await
                .unwrap_or_else(|_| panic!("nothing on the SSE stream within {timeout:?}"));
            match chunk {
                Some(Ok(bytes)) => {
                    self.buffer
                        .push_str(std::str::from_utf8(&bytes).expect("utf-8"));
                    self.parse();
                }
                Some(Err(err)) => panic!("sse error: {err}"),
                None => return None,
            }
        }
    }

    fn parse(&mut self) {
        while let Some(end) = self.buffer.find('\n') {
            let line: String = self.buffer.drain(..=end).collect();
            let line = line.trim_end_matches(['\n', '\r']);
            if line.is_empty() {
                if self.has_data {
                    let mut event = std::mem::take(&mut self.current);
                    if event.data.ends_with('\n') {
                        event.data.pop();
                    }
                    self.pending.push_back(SseItem::Event(event));
                }
                self.current = SseEvent::default();
                self.has_data = false;
                continue;
            }
            if let Some(comment) = line.strip_prefix(':') {
                self.pending
                    .push_back(SseItem::Comment(comment.trim().to_owned()));
                continue;
            }
            let (field, value) = match line.split_once(':') {
                Some((f, v)) => (f, v.strip_prefix(' ').unwrap_or(v)),
                None => (line, ""),
            };
            match field {
                "id" => self.current.id = Some(value.to_owned()),
                "event" => self.current.event = Some(value.to_owned()),
                "data" => {
                    self.current.data.push_str(value);
                    self.current.data.push('\n');
                    self.has_data = true;
                }
                "retry" => {
                    if let Ok(ms) = value.parse() {
                        self.pending.push_back(SseItem::Retry(ms));
                    }
                }
                _ => {}
            }
        }
    }

    /// The next event, skipping comments and retry lines.
    pub async fn event(&mut self, timeout: Duration) -> SseEvent {
        loop {
            match self.next_item(timeout).await {
                Some(SseItem::Event(event)) => return event,
                Some(_) => continue,
                None => panic!("the SSE stream ended"),
            }
        }
    }
}

#[tokio::test]
async fn a_wait_returns_what_its_condition_gave_once_it_holds() {
    let mut looks = 0;
    let value = wait_for("the third look", WAIT, async || {
        looks += 1;
        (looks == 3).then_some(looks * 10)
    })
    .await;
    assert_eq!(value, 30);
}

#[tokio::test]
#[should_panic(expected = "waiting for the impossible; last seen: still nothing")]
async fn a_wait_that_never_holds_fails_naming_what_it_waited_for_and_what_it_saw() {
    wait_for("the impossible", Duration::from_millis(50), async || {
        Err::<(), _>("still nothing")
    })
    .await
}
