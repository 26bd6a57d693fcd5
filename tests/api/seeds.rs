//! The seeds' client examples run unchanged: each one, as its document
//! wrote it (`tests/seeds/`), with only the host, the port and the key
//! changed, against a real server; the test asserts what it prints. Python
//! clients run on `python3` with the seed's own library (`websockets`,
//! `websocket-client`); browser clients in headless Chromium.

use std::{
    process::Stdio,
    sync::{Arc, Mutex},
    time::Duration,
};

use reqwest::Method;
use serde_json::{json, Value};
use tokio::{
    io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader},
    process::{Child, Command},
};

use crate::browser::Browser;
use crate::helpers::*;

/// How long a seed client may take to do what the test waits for.
const CLIENT_WAIT: Duration = Duration::from_secs(30);

/// The seed's code with each `(from, to)` replaced; every `from` must be
/// there, so an edited file cannot silently skip a substitution.
fn substitute(code: &str, pairs: &[(&str, &str)]) -> String {
    pairs.iter().fold(code.to_owned(), |code, (from, to)| {
        assert!(code.contains(from), "the seed's code has no {from:?}");
        code.replace(from, to)
    })
}

/// A Python program running in the background, its output collected.
struct Python {
    child: Child,
    stdout: Arc<Mutex<Vec<String>>>,
    stderr: Arc<Mutex<String>>,
    _script: tempfile::NamedTempFile,
}

fn python_command(script: &std::path::Path, args: &[&str]) -> Command {
    let mut command = Command::new("python3");
    // -u: unbuffered, so lines arrive as they are printed.
    command
        .arg("-u")
        .arg(script)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    command
}

fn script_file(code: &str) -> tempfile::NamedTempFile {
    let mut file = tempfile::Builder::new()
        .suffix(".py")
        .tempfile()
        .expect("a temporary file");
    std::io::Write::write_all(&mut file, code.as_bytes()).expect("write the script");
    file
}

impl Python {
    fn start(code: &str, args: &[&str]) -> Python {
        let script = script_file(code);
        let mut child = python_command(script.path(), args)
            .spawn()
            .unwrap_or_else(|e| {
                panic!("start python3 ({e}): run the tests with scripts/test.sh, which installs it")
            });
        let stdout = Arc::new(Mutex::new(Vec::new()));
        let stderr = Arc::new(Mutex::new(String::new()));
        let out = child.stdout.take().expect("stdout");
        let lines = stdout.clone();
        tokio::spawn(async move {
            let mut reader = BufReader::new(out).lines();
            while let Ok(Some(line)) = reader.next_line().await {
                lines.lock().expect("lines").push(line);
            }
        });
        let mut err = child.stderr.take().expect("stderr");
        let text = stderr.clone();
        tokio::spawn(async move {
            let mut all = String::new();
            let _ = err.read_to_string(&mut all).await;
            text.lock().expect("stderr").push_str(&all);
        });
        Python {
            child,
            stdout,
            stderr,
            _script: script,
        }
    }

    fn lines(&self) -> Vec<String> {
        self.stdout.lock().expect("lines").clone()
    }

    /// Waits until a printed line satisfies `wanted`.
    async fn wait_line(&self, what: &str, wanted: impl Fn(&str) -> bool) {
        wait_for(what, CLIENT_WAIT, async || {
            let lines = self.lines();
            if lines.iter().any(|l| wanted(l)) {
                Ok(())
            } else {
                Err(format!(
                    "printed {lines:?}; stderr: {}",
                    self.stderr.lock().expect("stderr")
                ))
            }
        })
        .await
    }

    /// Waits for the program to end; its exit status and everything it printed.
    async fn finish(mut self) -> (std::process::ExitStatus, Vec<String>, String) {
        let status = tokio::time::timeout(CLIENT_WAIT, self.child.wait())
            .await
            .unwrap_or_else(|_| panic!("the client did not end; printed {:?}", self.lines()))
            .expect("wait for python3");
        // The readers finish once the pipes close.
        let lines = wait_for("the client's output to be read", WAIT, async || {
            let done = self.stdout.lock().is_ok() && Arc::strong_count(&self.stdout) == 1;
            done.then(|| self.lines())
        })
        .await;
        let stderr = wait_for("the client's errors to be read", WAIT, async || {
            (Arc::strong_count(&self.stderr) == 1)
                .then(|| self.stderr.lock().expect("stderr").clone())
        })
        .await;
        (status, lines, stderr)
    }

    async fn kill(mut self) {
        let _ = self.child.kill().await;
    }
}

/// Runs a Python program to its end and returns what it printed; it must
/// succeed.
pub async fn run_python(code: &str, args: &[&str]) -> String {
    let (status, lines, stderr) = Python::start(code, args).finish().await;
    assert!(
        status.success(),
        "python3 failed: {stderr}\nprinted: {lines:?}"
    );
    lines.join("\n")
}

/// Waits until the server holds `n` stream connections.
async fn wait_connections(app: &TestApp, n: usize) {
    wait_for(
        &format!("{n} stream connections"),
        CLIENT_WAIT,
        async || {
            let open = app
                .hub
                .stats()
                .connections
                .load(std::sync::atomic::Ordering::Relaxed);
            (open == n).then_some(()).ok_or(format!("{open} open"))
        },
    )
    .await
}

/// A server whose streams need no credentials, as seeds 000, 002 and 004
/// run (their documents configure it so, and their examples carry none).
async fn open_server(db: &TestDb) -> TestApp {
    let mut settings = test_settings(db);
    settings.http.require_authentication = false;
    TestApp::spawn_with(settings).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seed_000_the_sms_gateway_python_client_prints_incoming_and_outgoing_events() {
    let db = TestDb::new(Backend::Sqlite).await;
    let app = open_server(&db).await;
    app.create_instance("alpha", quick_simulator()).await;
    let host = format!("ws://127.0.0.1:{}", app.port);
    let code = substitute(
        include_str!("../seeds/000_sms_gateway.py"),
        &[("ws://localhost:3000", &host)],
    );
    let client = Python::start(&code, &[]);
    wait_connections(&app, 1).await;
    app.send_text("alpha", "+15550001111", "hello gateway")
        .await;
    client
        .wait_line("the echo", |l| l.contains("Echo: hello gateway"))
        .await;
    // The server's shutdown closes with 1001, which ends `async for`.
    app.stop().await;
    let (status, lines, stderr) = client.finish().await;
    assert!(status.success(), "{stderr}");
    assert_eq!(lines.len(), 2, "only what it asked for: {lines:?}");
    assert!(
        lines[0].starts_with("Received outgoing: {")
            && lines[0].contains("'content': 'hello gateway'"),
        "{lines:?}"
    );
    assert!(
        lines[1].starts_with("Received incoming: {")
            && lines[1].contains("'content': 'Echo: hello gateway'"),
        "{lines:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seed_000_the_sms_gateway_browser_client_gets_modem_status_updates() {
    let db = TestDb::new(Backend::Sqlite).await;
    let app = open_server(&db).await;
    let code = substitute(
        include_str!("../seeds/000_sms_gateway.js"),
        &[(
            "ws://localhost:3000",
            &format!("ws://127.0.0.1:{}", app.port),
        )],
    );
    let mut browser = Browser::open(&app.url("/")).await;
    browser.capture_console().await;
    assert_eq!(browser.run_script(&code).await, None);
    browser
        .wait_console("the open", |l| l == "Connected to SMS Gateway WebSocket")
        .await;
    wait_connections(&app, 1).await;
    // A new instance's modem comes up: its status changes.
    app.create_instance("alpha", quick_simulator()).await;
    browser
        .wait_console("a modem status update", |l| {
            l.starts_with("Received event: {") && l.contains("event_type: modem_status_update")
        })
        .await;
    assert!(
        browser
            .console
            .iter()
            .filter(|l| l.starts_with("Received event:"))
            .all(|l| l.contains("event: connection") && l.contains("instance: alpha")),
        "{:?}",
        browser.console
    );
    drop(browser);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seed_001_the_evolution_browser_client_switches_on_event() {
    let db = TestDb::new(Backend::Sqlite).await;
    let app = TestApp::spawn(&db).await;
    let key = app.create_instance("alpha", quick_simulator()).await;
    let code = substitute(
        include_str!("../seeds/001_evolution.js"),
        &[
            (
                "ws://localhost:2559",
                &format!("ws://127.0.0.1:{}", app.port),
            ),
            ("your_api_key_here", &key),
        ],
    );
    let mut browser = Browser::open(&app.url("/")).await;
    browser.capture_console().await;
    assert_eq!(browser.run_script(&code).await, None);
    browser
        .wait_console("the open", |l| l == "Connected to WebSocket")
        .await;
    wait_connections(&app, 1).await;
    app.send_text("alpha", "+15550001111", "hello browser")
        .await;
    browser
        .wait_console("the message", |l| l == "New message: hello browser")
        .await;
    browser
        .wait_console("the echo", |l| l == "New message: Echo: hello browser")
        .await;
    let presence = app
        .admin(Method::POST, "/instance/setPresence/alpha")
        .json(&json!({ "presence": "composing" }))
        .send()
        .await
        .expect("presence");
    assert_eq!(presence.status(), 200);
    browser
        .wait_console("the presence", |l| l == "Presence update: composing")
        .await;
    drop(browser);
    app.stop().await;
}

/// The lines seed 001's Python client prints for one text sent on `alpha`.
fn evolution_story(text: &str) -> Vec<String> {
    let mut lines = vec![
        "Received message event from alpha".to_owned(),
        format!("Message content: {text}"),
        "Received message event from alpha".to_owned(),
        format!("Message content: Echo: {text}"),
    ];
    lines.extend(std::iter::repeat_n(
        "Received delivery event from alpha".to_owned(),
        3,
    ));
    lines.sort();
    lines
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seed_001_the_evolution_python_client_reads_events_and_error_frames_alike() {
    let db = TestDb::new(Backend::Sqlite).await;
    let mut settings = test_settings(&db);
    settings.limits.max_connections_per_credential = 1;
    let app = TestApp::spawn_with(settings).await;
    let key = app.create_instance("alpha", quick_simulator()).await;
    let code = substitute(
        include_str!("../seeds/001_evolution.py"),
        &[
            (
                "ws://localhost:2559",
                &format!("ws://127.0.0.1:{}", app.port),
            ),
            ("your_api_key_here", &key),
        ],
    );

    // Its key already holds its one connection: the client is told so with
    // an error frame, which it reads like any event, and a 1013.
    let holder = app.ws(&format!("/ws?apikey={key}")).await;
    let (status, lines, stderr) = Python::start(&code, &[]).finish().await;
    assert!(status.success(), "{stderr}");
    assert_eq!(
        lines,
        [
            "Connection opened",
            "Received error event from None",
            // websocket-client reports any close but 1000 to on_error too.
            "Error: Connection closed (code 1013): CONNECTION_LIMIT",
            "Connection closed: 1013 - CONNECTION_LIMIT",
        ],
        "{stderr}"
    );
    holder.close().await;
    wait_connections(&app, 0).await;

    let client = Python::start(&code, &[]);
    client
        .wait_line("the connection", |l| l == "Connection opened")
        .await;
    wait_connections(&app, 1).await;
    app.send_text("alpha", "+15550001111", "hello evolution")
        .await;
    let story = evolution_story("hello evolution");
    wait_for("the text's whole story", CLIENT_WAIT, async || {
        let mut seen: Vec<String> = client
            .lines()
            .into_iter()
            .filter(|l| story.contains(l))
            .collect();
        seen.sort();
        (seen == story)
            .then_some(())
            .ok_or(format!("{:?}", client.lines()))
    })
    .await;
    app.stop().await;
    let (status, lines, stderr) = client.finish().await;
    assert!(status.success(), "{stderr}");
    assert_eq!(lines.first().map(String::as_str), Some("Connection opened"));
    assert_eq!(
        lines.last().map(String::as_str),
        Some("Connection closed: 1001 - server shutting down")
    );
    // Nothing it could not read: every line is one its handlers print.
    for line in &lines[1..lines.len() - 1] {
        assert!(
            story.contains(line)
                || line == "Received connection event from alpha"
                || line.starts_with("Error: Connection closed (code 1001)"),
            "{line}: {lines:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seed_004_the_resource_clients_subscribe_and_read_every_frame() {
    let db = TestDb::new(Backend::Sqlite).await;
    let app = open_server(&db).await;
    // Its resource is an instance: /ws/{table} is /ws/{instance}.
    app.create_instance("products", quick_simulator()).await;
    let host = format!("ws://127.0.0.1:{}", app.port);
    let pairs = [("ws://localhost:8000", host.as_str())];

    let out = run_python(
        &substitute(include_str!("../seeds/004_connect.py"), &pairs),
        &[],
    )
    .await;
    let ack: Value =
        serde_json::from_str(out.strip_prefix("Received: ").expect("its one line")).expect("JSON");
    assert_eq!(ack["event"], "subscribed", "{ack}");

    let client = Python::start(
        &substitute(include_str!("../seeds/004_client.py"), &pairs),
        &[],
    );
    client
        .wait_line("the acknowledgement", |l| {
            l.starts_with("Event: subscribed, Data: {")
        })
        .await;
    app.send_text("products", "+15550001111", "hello resource")
        .await;
    client
        .wait_line("the echo", |l| {
            l.starts_with("Event: message, Data: {")
                && l.contains("'content': 'Echo: hello resource'")
        })
        .await;
    let lines = client.lines();
    client.kill().await;
    let deliveries = lines
        .iter()
        .filter(|l| l.starts_with("Event: delivery, Data: {"))
        .count();
    assert_eq!(deliveries, 3, "{lines:?}");
    assert!(lines.iter().all(|l| l.starts_with("Event: ")), "{lines:?}");
    app.stop().await;
}

/// The text of `code` between the line containing `from` (or the start)
/// and the one containing `to` (or the end): a seed's snippet run section
/// by section, as a reader would try it.
fn section(code: &str, from: Option<&str>, to: Option<&str>) -> String {
    let start = from.map_or(0, |m| code.find(m).unwrap_or_else(|| panic!("no {m:?}")));
    let end = to.map_or(code.len(), |m| {
        code.find(m).unwrap_or_else(|| panic!("no {m:?}"))
    });
    code[start..end].to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seed_002_the_browser_websocket_and_event_source_examples_run_as_written() {
    let db = TestDb::new(Backend::Sqlite).await;
    let app = open_server(&db).await;
    app.create_instance("alpha", quick_simulator()).await;
    // The page comes from the server itself: the EventSource URL is relative.
    let mut browser = Browser::open(&app.url("/")).await;
    browser.capture_console().await;

    let code = substitute(
        include_str!("../seeds/002_websocket.js"),
        &[(
            "ws://localhost:8080",
            &format!("ws://127.0.0.1:{}", app.port),
        )],
    );
    let setup = section(&code, None, Some("// Send messages"));
    assert_eq!(browser.run_script(&setup).await, None);
    browser.wait_console("the open", |l| l == "Connected").await;
    browser
        .wait_console("the answer to its greeting", |l| {
            l.starts_with("Received: {") && l.contains("BAD_REQUEST")
        })
        .await;
    let send = section(&code, Some("// Send messages"), Some("// Close"));
    assert_eq!(browser.run_script(&send).await, None);
    // A binary message is not understood: explained, then closed with 1003.
    browser
        .wait_console("the close", |l| l.starts_with("Disconnected:"))
        .await;
    assert!(
        browser.console.contains(&"Disconnected: 1003".to_owned()),
        "{:?}",
        browser.console
    );
    let answers = browser
        .console
        .iter()
        .filter(|l| l.starts_with("Received: {"))
        .count();
    assert_eq!(
        answers, 3,
        "its two texts and its blob: {:?}",
        browser.console
    );
    assert_eq!(
        browser
            .run_script(&section(&code, Some("// Close"), None))
            .await,
        None
    );
    wait_connections(&app, 0).await;

    let code = include_str!("../seeds/002_sse.js");
    let setup = section(code, None, Some("// Close"));
    assert_eq!(browser.run_script(&setup).await, None);
    wait_connections(&app, 1).await;
    app.send_text("alpha", "+15550001111", "hello stream").await;
    browser
        .wait_console("the echo, through onmessage", |l| {
            l.starts_with("Message: ") && l.contains("Echo: hello stream")
        })
        .await;
    // onmessage sees every kind, not only `message`.
    browser
        .wait_console("a delivery, through onmessage", |l| {
            l.starts_with("Message: ") && l.contains("\"event\":\"delivery\"")
        })
        .await;
    assert_eq!(
        browser
            .run_script(&section(code, Some("// Close"), None))
            .await,
        None
    );
    wait_connections(&app, 0).await;
    assert!(
        !browser
            .console
            .iter()
            .any(|l| l.starts_with("Error:") || l.starts_with("Uncaught")),
        "{:?}",
        browser.console
    );

    // The seed's C++ client (its library is in no registry here) offers the
    // subprotocols `chat` and `json`. A browser offering them fails the
    // handshake unless one is chosen: it opens, told `json`.
    let offer = format!(
        "const offered = new WebSocket('ws://127.0.0.1:{}/ws', ['chat', 'json']);\n\
         offered.onopen = () => {{ console.log('protocol: ' + offered.protocol); offered.close(); }};\n\
         offered.onerror = () => console.log('handshake failed');",
        app.port
    );
    assert_eq!(browser.run_script(&offer).await, None);
    browser
        .wait_console("the offer's answer", |l| {
            l.starts_with("protocol: ") || l == "handshake failed"
        })
        .await;
    assert!(
        browser.console.contains(&"protocol: json".to_owned()),
        "{:?}",
        browser.console
    );
    drop(browser);
    app.stop().await;
}

/// A token for the instance `alpha`, minted with the admin key.
async fn alpha_token(app: &TestApp) -> String {
    let minted: Value = app
        .admin(Method::POST, "/auth/token")
        .json(&json!({ "instances": ["alpha"] }))
        .send()
        .await
        .expect("mint")
        .json()
        .await
        .expect("json");
    minted["token"].as_str().expect("token").to_owned()
}

/// Seed 003's client resets its backoff whenever a socket opens, so on the
/// feed endpoints every refusal comes at the handshake, not only a bad
/// credential: a client over its connection quota is told 429 there and
/// backs off instead of reconnecting every two seconds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seed_003_a_feed_over_its_quota_is_refused_at_the_handshake() {
    let db = TestDb::new(Backend::Sqlite).await;
    let mut settings = test_settings(&db);
    settings.limits.max_connections_per_credential = 1;
    let app = TestApp::spawn_with(settings).await;
    app.create_instance("alpha", quick_simulator()).await;
    let token = &alpha_token(&app).await;
    // Admitted before its 101, so it holds the credential's one place.
    let first = app.ws(&format!("/ws/feed?token={token}")).await;

    let mut raw = tokio::net::TcpStream::connect(("127.0.0.1", app.port))
        .await
        .expect("connect");
    raw.write_all(crate::rfc6455::handshake_request(&format!("/ws/feed?token={token}")).as_bytes())
        .await
        .expect("handshake");
    let mut answer = Vec::new();
    tokio::time::timeout(WAIT, raw.read_to_end(&mut answer))
        .await
        .expect("answer")
        .expect("read");
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 429"), "{answer}");
    assert!(answer.contains("CONNECTION_LIMIT"), "{answer}");
    first.close().await;
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seed_003_the_feed_client_reads_typed_frames_and_backs_off_on_a_bad_token() {
    let db = TestDb::new(Backend::Sqlite).await;
    let app = TestApp::spawn(&db).await;
    app.create_instance("alpha", quick_simulator()).await;
    let token = &alpha_token(&app).await;
    let code = substitute(
        include_str!("../seeds/003_feed.js"),
        &[
            (
                "wss://your-api-domain.com",
                &format!("ws://127.0.0.1:{}", app.port),
            ),
            ("your-access-token", token),
        ],
    );
    let mut browser = Browser::open(&app.url("/")).await;
    browser.capture_console().await;
    assert_eq!(browser.run_script(&code).await, None);
    browser
        .wait_console("the open", |l| l == "WebSocket connected")
        .await;
    // The callbacks its handler calls are the application's to write.
    let hooks = "WebSocketManager.prototype.onPresenceUpdate = (data) => console.log('presence', data.presence);";
    assert_eq!(browser.run_script(hooks).await, None);
    wait_connections(&app, 1).await;

    app.send_text("alpha", "+15550001111", "hello feed").await;
    browser
        .wait_console("a typed message", |l| l == "Unknown message type: message")
        .await;
    browser
        .wait_console("a typed delivery", |l| {
            l == "Unknown message type: delivery"
        })
        .await;
    let presence = app
        .admin(Method::POST, "/instance/setPresence/alpha")
        .json(&json!({ "presence": "available" }))
        .send()
        .await
        .expect("presence");
    assert_eq!(presence.status(), 200);
    browser
        .wait_console("its presence handler", |l| l == "presence available")
        .await;
    assert!(
        !browser.console.iter().any(|l| l.contains("undefined")),
        "every frame has a type: {:?}",
        browser.console
    );

    // A bad token is refused at the handshake: its backoff grows (it resets
    // only when a socket opens) instead of reconnecting every two seconds
    // until its address is locked out.
    let bad = "const bad = new WebSocketManager('not-a-token'); bad.connect('feed');";
    assert_eq!(browser.run_script(bad).await, None);
    wait_for("two reconnect attempts", CLIENT_WAIT, async || {
        let attempts = browser.eval("bad.reconnectAttempts").await;
        (attempts.as_u64() >= Some(2)).then_some(()).ok_or(attempts)
    })
    .await;
    let opened = browser
        .console
        .iter()
        .filter(|l| *l == "WebSocket connected")
        .count();
    assert_eq!(
        opened, 1,
        "the bad token never opened: {:?}",
        browser.console
    );
    let mut raw = tokio::net::TcpStream::connect(("127.0.0.1", app.port))
        .await
        .expect("connect");
    raw.write_all(crate::rfc6455::handshake_request("/ws/feed?token=not-a-token").as_bytes())
        .await
        .expect("handshake");
    let mut answer = vec![0u8; 256];
    let n = tokio::time::timeout(WAIT, raw.read(&mut answer))
        .await
        .expect("answer")
        .expect("read");
    assert!(
        answer[..n].starts_with(b"HTTP/1.1 401"),
        "{}",
        String::from_utf8_lossy(&answer[..n])
    );
    // And its address is not locked out.
    let mut again = app.ws(&format!("/ws/feed?token={token}")).await;
    again
        .send_json(json!({ "type": "ping", "data": {}, "timestamp": "2024-01-15T10:30:00Z" }))
        .await;
    let pong = again.json(WAIT).await;
    assert_eq!(
        (pong["type"].as_str(), pong["data"].clone()),
        (Some("pong"), json!({}))
    );
    drop(browser);
    app.stop().await;
}
