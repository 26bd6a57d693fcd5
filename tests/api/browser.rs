//! A real browser's `EventSource` against `/events/stream`: headless
//! Chromium, driven over the DevTools protocol, loads a page from another
//! origin that subscribes as the seed's example does. It must get every
//! event with its id, survive a server restart by reconnecting on its own
//! with `Last-Event-ID`, and miss nothing committed while it was away.

use std::{
    path::PathBuf,
    process::{Child, Command, Stdio},
    time::Duration,
};

use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpListener,
};
use tokio_tungstenite::{tungstenite::Message, MaybeTlsStream, WebSocketStream};

use crate::helpers::*;

/// The page, as a browser user would write it (seed 002's SSE example).
fn page(stream_url: &str) -> String {
    format!(
        r#"<!doctype html>
<html><head><title>switchboard SSE</title></head><body><script>
window.seen = [];
window.opens = 0;
window.errors = 0;
const es = new EventSource({stream_url:?});
es.onopen = () => {{ window.opens += 1; }};
es.onerror = () => {{ window.errors += 1; }};
for (const kind of ["message", "delivery"]) {{
  es.addEventListener(kind, (event) => {{
    window.seen.push({{ type: event.type, lastEventId: event.lastEventId, data: JSON.parse(event.data) }});
  }});
}}
</script></body></html>"#
    )
}

/// Serves `html` to every request on `listener`, a port of its own (another
/// origin than the server's).
fn serve_page(listener: TcpListener, html: String) {
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            let html = html.clone();
            tokio::spawn(async move {
                let mut request = Vec::new();
                let mut chunk = [0u8; 1024];
                while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                    match socket.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => request.extend_from_slice(&chunk[..n]),
                    }
                }
                let response = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: text/html; charset=utf-8\r\n\
                     content-length: {}\r\nconnection: close\r\n\r\n{html}",
                    html.len()
                );
                let _ = socket.write_all(response.as_bytes()).await;
                let _ = socket.shutdown().await;
            });
        }
    });
}

/// Headless Chromium with one page open, and a DevTools connection to it.
pub(crate) struct Browser {
    child: Child,
    _profile: tempfile::TempDir,
    page: WebSocketStream<MaybeTlsStream<tokio::net::TcpStream>>,
    next_id: u64,
    /// What the page logged to its console and its uncaught exceptions, in
    /// order, once [`Browser::capture_console`] was called.
    pub(crate) console: Vec<String>,
}

impl Browser {
    pub(crate) async fn open(url: &str) -> Browser {
        let program = std::env::var("CHROMIUM").unwrap_or_else(|_| "chromium".to_owned());
        let profile = tempfile::tempdir().expect("profile dir");
        let child = Command::new(&program)
            .args([
                "--headless=new",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-dev-shm-usage",
                "--no-first-run",
                "--no-default-browser-check",
                "--remote-debugging-address=127.0.0.1",
                "--remote-debugging-port=0",
            ])
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .arg(url)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("start {program} ({e}): run the tests with scripts/test.sh, which installs Chromium")
            });
        let port = devtools_port(&profile.path().join("DevToolsActivePort")).await;
        let page_ws = page_target(port, url).await;
        let (page, _) = tokio_tungstenite::connect_async(page_ws.as_str())
            .await
            .expect("connect to the page over DevTools");
        let mut browser = Browser {
            child,
            _profile: profile,
            page,
            next_id: 0,
            console: Vec::new(),
        };
        // A script run before the page has loaded would be lost with the
        // document it ran in.
        let loaded = format!("location.href === {url:?} && document.readyState === 'complete'");
        wait_for(
            &format!("{url} to load"),
            Duration::from_secs(30),
            async || browser.eval(&loaded).await == Value::Bool(true),
        )
        .await;
        browser
    }

    /// From now on, console messages and uncaught exceptions of the page are
    /// collected in [`Browser::console`] (as DevTools reports them).
    pub(crate) async fn capture_console(&mut self) {
        self.call("Runtime.enable", json!({})).await;
    }

    /// Runs a script in the page as a user's `<script>` would run; returns
    /// the text of the exception it threw, if it threw one.
    pub(crate) async fn run_script(&mut self, script: &str) -> Option<String> {
        let result = self
            .call("Runtime.evaluate", json!({ "expression": script }))
            .await;
        result.get("exceptionDetails").map(|details| {
            details["exception"]["description"]
                .as_str()
                .unwrap_or_default()
                .to_owned()
        })
    }

    /// Waits until the console holds a line for which `wanted` holds.
    pub(crate) async fn wait_console(&mut self, what: &str, wanted: impl Fn(&str) -> bool) {
        wait_for(what, Duration::from_secs(30), async || {
            // A cheap call that lets pending console events arrive.
            self.eval("0").await;
            if self.console.iter().any(|line| wanted(line)) {
                Ok(())
            } else {
                Err(format!("console: {:?}", self.console))
            }
        })
        .await
    }

    /// Evaluates a JavaScript expression in the page and returns its value.
    pub(crate) async fn eval(&mut self, expression: &str) -> Value {
        let reply = self
            .call(
                "Runtime.evaluate",
                json!({ "expression": expression, "returnByValue": true }),
            )
            .await;
        assert!(
            reply.get("exceptionDetails").is_none(),
            "evaluate threw: {reply}"
        );
        reply["result"]["value"].clone()
    }

    /// Calls a DevTools method and returns its result, collecting console
    /// events that arrive meanwhile.
    async fn call(&mut self, method: &str, params: Value) -> Value {
        self.next_id += 1;
        let id = self.next_id;
        let call = json!({ "id": id, "method": method, "params": params });
        self.page
            .send(Message::text(call.to_string()))
            .await
            .expect("send to DevTools");
        loop {
            let message = tokio::time::timeout(Duration::from_secs(10), self.page.next())
                .await
                .expect("DevTools answers")
                .expect("DevTools connection open")
                .expect("DevTools message");
            let Message::Text(text) = message else {
                continue;
            };
            let reply: Value = serde_json::from_str(&text).expect("DevTools JSON");
            match reply["method"].as_str() {
                Some("Runtime.consoleAPICalled") => {
                    let args = reply["params"]["args"]
                        .as_array()
                        .cloned()
                        .unwrap_or_default();
                    let line: Vec<String> = args.iter().map(console_arg).collect();
                    self.console.push(line.join(" "));
                }
                Some("Runtime.exceptionThrown") => {
                    let details = &reply["params"]["exceptionDetails"];
                    let text = details["exception"]["description"]
                        .as_str()
                        .or(details["text"].as_str())
                        .unwrap_or("");
                    self.console.push(format!("Uncaught {text}"));
                }
                _ => {}
            }
            if reply["id"].as_u64() == Some(id) {
                assert!(reply.get("error").is_none(), "{method} failed: {reply}");
                return reply["result"].clone();
            }
        }
    }

    /// Waits until `expression` is true in the page.
    async fn wait_page(&mut self, expression: &str, timeout: Duration) {
        let look = format!(
            "[Boolean({expression}), JSON.stringify({{opens: window.opens, errors: window.errors, seen: window.seen}})]"
        );
        wait_for(
            &format!("`{expression}` in the page"),
            timeout,
            async || {
                let answer = self.eval(&look).await;
                if answer[0] == Value::Bool(true) {
                    Ok(())
                } else {
                    Err(format!("page state: {}", answer[1]))
                }
            },
        )
        .await
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One console argument as text: strings as they are, objects as their
/// DevTools preview (`{key: value, ...}`, first level only).
fn console_arg(arg: &Value) -> String {
    match &arg["value"] {
        Value::String(s) => s.clone(),
        Value::Null => match arg["preview"]["properties"].as_array() {
            Some(properties) => {
                let fields: Vec<String> = properties
                    .iter()
                    .map(|p| {
                        format!(
                            "{}: {}",
                            p["name"].as_str().unwrap_or(""),
                            p["value"].as_str().unwrap_or("")
                        )
                    })
                    .collect();
                format!("{{{}}}", fields.join(", "))
            }
            None => arg["description"].as_str().unwrap_or("").to_owned(),
        },
        other => other.to_string(),
    }
}

/// Chromium writes the port it chose for DevTools into the profile.
async fn devtools_port(file: &PathBuf) -> u16 {
    wait_for(
        "Chromium to open DevTools",
        Duration::from_secs(30),
        async || {
            let text = std::fs::read_to_string(file).ok()?;
            text.lines().next().and_then(|l| l.trim().parse().ok())
        },
    )
    .await
}

/// The DevTools WebSocket URL of the page showing `url`.
async fn page_target(port: u16, url: &str) -> String {
    wait_for(
        &format!("a DevTools page for {url}"),
        Duration::from_secs(30),
        async || {
            let targets: Value = match http_client()
                .get(format!("http://127.0.0.1:{port}/json/list"))
                .send()
                .await
            {
                Ok(response) => response.json().await.unwrap_or(Value::Null),
                Err(_) => Value::Null,
            };
            let found = targets.as_array().and_then(|targets| {
                targets.iter().find_map(|t| {
                    let is_page = t["type"] == "page" && t["url"].as_str() == Some(url);
                    is_page.then(|| t["webSocketDebuggerUrl"].as_str().map(str::to_owned))?
                })
            });
            found.ok_or(targets)
        },
    )
    .await
}

/// The ids and kinds the page has seen, checked against their envelopes.
async fn seen(browser: &mut Browser) -> Vec<(i64, String)> {
    let seen = browser.eval("window.seen").await;
    seen.as_array()
        .expect("window.seen")
        .iter()
        .map(|e| {
            let id = e["data"]["id"].as_i64().expect("envelope id");
            assert_eq!(
                e["lastEventId"].as_str(),
                Some(id.to_string().as_str()),
                "the SSE id is the log id"
            );
            assert_eq!(e["data"]["instance"], "web", "tagged with the instance");
            (id, e["type"].as_str().expect("type").to_owned())
        })
        .collect()
}

/// How long the page gets to show what the server sent. Generous: on a
/// loaded machine the instance's driver may start seconds late (its lease
/// first), and each wait ends as soon as the page shows it.
const PAGE_WAIT: Duration = Duration::from_secs(60);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_browser_event_source_gets_every_event_and_resumes_after_a_server_restart() {
    let db = TestDb::new(Backend::Postgres).await;
    let page_listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let page_port = page_listener.local_addr().expect("addr").port();
    let page_url = format!("http://127.0.0.1:{page_port}/");
    let mut settings = test_settings(&db);
    // The page's origin is allowed, and no other.
    settings.http.allowed_origins = vec![format!("http://127.0.0.1:{page_port}")];
    // Long enough that the text sent right after the restart is committed
    // before the browser is back: it can only get it by resuming.
    settings.http.sse_retry_ms = 2000;
    let app = TestApp::spawn_with(settings.clone()).await;
    app.create_instance("web", quick_simulator()).await;
    let stream = app.url(&format!(
        "/events/stream?apikey={}&events=message,delivery&instances=web",
        app.admin_key
    ));
    serve_page(page_listener, page(&stream));

    let mut browser = Browser::open(&page_url).await;
    browser
        .wait_page("window.opens === 1", Duration::from_secs(30))
        .await;

    // The outgoing message, its three delivery states, and the echo reply.
    app.send_text("web", "+15550001111", "hello browser").await;
    browser
        .wait_page("window.seen.length >= 5", PAGE_WAIT)
        .await;

    // The server goes away; the browser notices and retries by itself.
    let port = app.port;
    app.stop().await;
    browser.wait_page("window.errors >= 1", PAGE_WAIT).await;
    settings.http.port = port;
    let app = TestApp::spawn_with(settings).await;
    app.send_text("web", "+15550001111", "while you were away")
        .await;
    browser
        .wait_page("window.opens === 2", Duration::from_secs(30))
        .await;
    browser
        .wait_page("window.seen.length >= 10", PAGE_WAIT)
        .await;
    let read_log = async || -> Vec<(i64, String)> {
        app.read_log("&events=message,delivery&instance=web")
            .await
            .iter()
            .map(|e| {
                let id = e["id"].as_i64().expect("id");
                let kind = e["event"].as_str().expect("event kind");
                let kind = kind.split('.').next().unwrap_or(kind).to_owned();
                (id, kind)
            })
            .collect()
    };
    let log = read_log().await;
    assert_eq!(log.len(), 10, "two texts, five events each: {log:?}");

    // Anything more would be a duplicate. A third text marks the end: its
    // five events must follow the ten directly, with nothing in between.
    app.send_text("web", "+15550001111", "the end").await;
    browser
        .wait_page("window.seen.length >= 15", PAGE_WAIT)
        .await;
    let with_marker = read_log().await;
    assert_eq!(
        with_marker.len(),
        15,
        "and five of the third: {with_marker:?}"
    );
    assert_eq!(with_marker[..10], log[..], "the ten come first");
    assert_eq!(
        seen(&mut browser).await,
        with_marker,
        "every event once, in order, across the restart"
    );
    drop(browser);
    app.stop().await;
}
