//! Webhooks: delivered from the log in order, retried while the receiver
//! fails, resumed after a server restart, with failures visible.

use std::{
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    time::Duration,
};

use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
use parking_lot::Mutex;
use reqwest::Method;
use serde_json::{json, Value};

use crate::helpers::*;
use crate::on_both_backends;

/// A webhook receiver that records what it accepts and can be told to fail.
struct Receiver {
    port: u16,
    received: Arc<Mutex<Vec<Value>>>,
    failing: Arc<AtomicBool>,
    handle: actix_web::dev::ServerHandle,
}

impl Receiver {
    async fn start() -> Receiver {
        let received = Arc::new(Mutex::new(Vec::new()));
        let failing = Arc::new(AtomicBool::new(false));
        let (r, f) = (received.clone(), failing.clone());
        let server = HttpServer::new(move || {
            let (r, f) = (r.clone(), f.clone());
            App::new().route(
                "/hook",
                web::post().to(move |req: HttpRequest, body: web::Bytes| {
                    let (r, f) = (r.clone(), f.clone());
                    async move {
                        if f.load(Ordering::SeqCst) {
                            return HttpResponse::ServiceUnavailable().finish();
                        }
                        assert_eq!(
                            req.headers()
                                .get("authorization")
                                .and_then(|v| v.to_str().ok()),
                            Some("Bearer hook-secret")
                        );
                        let event: Value = serde_json::from_slice(&body).expect("json body");
                        let id_header = req
                            .headers()
                            .get("x-switchboard-id")
                            .and_then(|v| v.to_str().ok());
                        assert_eq!(id_header, Some(event["id"].to_string().as_str()));
                        r.lock().push(event);
                        HttpResponse::Ok().finish()
                    }
                }),
            )
        })
        .workers(1)
        .disable_signals()
        .bind(("127.0.0.1", 0))
        .expect("bind");
        let port = server.addrs()[0].port();
        let server = server.run();
        let handle = server.handle();
        tokio::spawn(server);
        Receiver {
            port,
            received,
            failing,
            handle,
        }
    }

    fn ids(&self) -> Vec<i64> {
        self.received
            .lock()
            .iter()
            .map(|e| e["id"].as_i64().expect("id"))
            .collect()
    }
}

/// Generous for a loaded 2-core machine; every wait ends as soon as its
/// condition holds.
const LONG: Duration = Duration::from_secs(30);

on_both_backends! {
    async fn a_webhook_gets_every_event_in_order_after_its_receiver_and_the_server_were_down(backend: Backend) {
        let db = TestDb::new(backend).await;
        let receiver = Receiver::start().await;
        let app = TestApp::spawn(&db).await;
        app.create_instance("alpha", quick_simulator()).await;
        let set = app
            .admin(Method::POST, "/webhook/set/alpha")
            .json(&json!({ "webhook": {
                "enabled": true,
                "url": format!("http://127.0.0.1:{}/hook", receiver.port),
                "headers": { "Authorization": "Bearer hook-secret" },
                "events": ["MESSAGES_UPSERT", "SEND_MESSAGE"],
            }}))
            .send()
            .await
            .expect("send");
        assert_eq!(set.status(), 200);
        let found: Value = set.json().await.expect("json");
        assert_eq!(found["webhook"]["events"], json!(["message"]));
        // Header values are the receiver's secrets: only names are shown.
        assert!(!found.to_string().contains("hook-secret"));

        app.send_text("alpha", "+15550000001", "first").await;
        wait_for("the first two events at the receiver", LONG, async || receiver.ids().len() == 2).await;

        // The receiver fails: deliveries are retried and the failures show.
        receiver.failing.store(true, Ordering::SeqCst);
        for n in 0..4 {
            app.send_text("alpha", "+15550000001", &format!("while down {n}")).await;
        }
        let status = wait_for("two failures in a row to show", LONG, async || {
            let found: Value = app.get_json("/webhook/find/alpha").await;
            let status = found["webhook"]["status"].clone();
            if status["consecutiveFailures"].as_u64().unwrap_or(0) >= 2 {
                Ok(status)
            } else {
                Err(status)
            }
        })
        .await;
        assert!(status["consecutiveFailures"].as_u64().unwrap_or(0) >= 2, "{status}");
        assert!(status["lastError"].as_str().unwrap_or("").contains("503"), "{status}");
        let metrics = app.http.get(app.url("/metrics")).send().await.expect("send").text().await.expect("text");
        let failures: u64 = metrics
            .lines()
            .find_map(|l| l.strip_prefix("switchboard_webhook_failures_total "))
            .and_then(|v| v.parse().ok())
            .expect("the failure counter");
        assert!(failures >= 2);

        // The server restarts while the receiver is still down...
        app.stop().await;
        let app = TestApp::spawn(&db).await;
        for n in 0..3 {
            app.send_text("alpha", "+15550000001", &format!("after restart {n}")).await;
        }
        // The restarted server has tried the receiver and failed.
        wait_for("a failed delivery from the restarted server", LONG, async || {
            metric(&app, "switchboard_webhook_failures_total").await >= 1
        })
        .await;
        // ...then the receiver comes back and gets everything it missed,
        // once each, in log order.
        receiver.failing.store(false, Ordering::SeqCst);
        let expected: Vec<i64> = wait_for("8 messages out and 8 echoes back", LONG, async || {
            let log: Vec<i64> = app
                .read_log("&instance=alpha&events=message")
                .await
                .iter()
                .map(|e| e["id"].as_i64().expect("id"))
                .collect();
            if log.len() == 16 {
                Ok(log)
            } else {
                Err(format!("{} messages in the log", log.len()))
            }
        })
        .await;
        wait_for("every message at the receiver", LONG, async || {
            receiver.ids().len() >= expected.len()
        })
        .await;
        assert_eq!(receiver.ids(), expected);
        app.stop().await;
        receiver.handle.stop(false).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhook_settings_are_checked() {
    let db = TestDb::new(Backend::Sqlite).await;
    let app = TestApp::spawn(&db).await;
    app.create_instance("alpha", quick_simulator()).await;
    for body in [
        json!({ "url": "not a url" }),
        json!({ "url": "ftp://example.com/x" }),
        json!({ "url": "http://example.com/x", "events": ["nope"] }),
        json!({ "url": "http://example.com/x", "headers": { "bad header": "x" } }),
        json!({ "enabled": true }),
    ] {
        let response = app
            .admin(Method::POST, "/webhook/set/alpha")
            .json(&body)
            .send()
            .await
            .expect("send");
        assert_eq!(response.status(), 400, "{body}");
    }
    let none = app
        .admin(Method::GET, "/webhook/find/alpha")
        .send()
        .await
        .expect("send");
    assert_eq!(none.status(), 404);
    let ghost = app
        .admin(Method::POST, "/webhook/set/ghost")
        .json(&json!({ "url": "http://example.com/x" }))
        .send()
        .await
        .expect("send");
    assert_eq!(ghost.status(), 404);
    app.stop().await;
}

/// Sets alpha's webhook to `url` (all events) and returns the answer.
async fn set_hook(app: &TestApp, url: &str) -> reqwest::Response {
    app.admin(Method::POST, "/webhook/set/alpha")
        .json(&json!({ "webhook": {
            "url": url,
            "headers": { "Authorization": "Bearer hook-secret" },
        }}))
        .send()
        .await
        .expect("send")
}

/// The webhook's status once it has failed at least once.
async fn failed_status(app: &TestApp) -> Value {
    wait_for("a failed delivery to show", LONG, async || {
        let found: Value = app.get_json("/webhook/find/alpha").await;
        let status = found["webhook"]["status"].clone();
        if status["consecutiveFailures"].as_u64().unwrap_or(0) >= 1 {
            Ok(status)
        } else {
            Err(status)
        }
    })
    .await
}

on_both_backends! {
    async fn a_webhook_gets_every_event_while_the_instance_streams_nothing_to_sockets(backend: Backend) {
        // The usual Evolution setup: webhook on, WebSocket off.
        let db = TestDb::new(backend).await;
        let receiver = Receiver::start().await;
        let app = TestApp::spawn(&db).await;
        app.create_instance("alpha", quick_simulator()).await;
        let set = set_hook(&app, &format!("http://127.0.0.1:{}/hook", receiver.port)).await;
        assert_eq!(set.status(), 200);
        let start = set.json::<Value>().await.expect("json")["webhook"]["status"]["cursor"]
            .as_i64()
            .expect("the webhook's starting cursor");
        let off = app
            .admin(Method::POST, "/websocket/set/alpha")
            .json(&json!({ "websocket": { "enabled": false } }))
            .send()
            .await
            .expect("send");
        assert_eq!(off.status(), 200);

        let mut texts = Vec::new();
        for n in 0..3 {
            let text = format!("socket off {n}");
            texts.push((app.send_text("alpha", "+15550000001", &text).await, text));
        }
        let told: Vec<(&str, &str)> = texts.iter().map(|(id, t)| (id.as_str(), t.as_str())).collect();
        wait_delivered_and_echoed(&app, &told).await;
        // Every event of alpha committed after the webhook was set, each
        // once, in log order: the outgoing texts, their deliveries, the echoes.
        let expected: Vec<i64> = app
            .read_log("&instance=alpha")
            .await
            .iter()
            .map(|e| e["id"].as_i64().expect("id"))
            .filter(|id| *id > start)
            .collect();
        assert!(expected.len() >= 3 * 5, "{expected:?}");
        wait_for("every event at the receiver", LONG, async || {
            receiver.ids().len() >= expected.len()
        })
        .await;
        assert_eq!(receiver.ids(), expected);

        // And after a restart the cursor goes on from there, skipping nothing.
        app.stop().await;
        let app = TestApp::spawn(&db).await;
        let last = app.send_text("alpha", "+15550000001", "after restart").await;
        wait_delivered_and_echoed(&app, &[(&last, "after restart")]).await;
        let expected: Vec<i64> = app
            .read_log("&instance=alpha")
            .await
            .iter()
            .map(|e| e["id"].as_i64().expect("id"))
            .filter(|id| *id > start)
            .collect();
        wait_for("the events after the restart at the receiver", LONG, async || {
            let mut got = receiver.ids();
            got.dedup();
            got.len() >= expected.len()
        })
        .await;
        // Delivery is at least once: the event in flight when the server
        // stopped may come again, right after itself; nothing is skipped.
        let received = receiver.ids();
        let mut got = received.clone();
        got.dedup();
        assert_eq!(got, expected);
        assert!(received.len() <= expected.len() + 1, "{received:?}");
        app.stop().await;
        receiver.handle.stop(false).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_the_allowlist_a_webhook_cannot_reach_loopback_by_address_or_by_name() {
    let db = TestDb::new(Backend::Sqlite).await;
    let receiver = Receiver::start().await;
    let mut settings = test_settings(&db);
    settings.webhooks.allowed_networks = Vec::new();
    let app = TestApp::spawn_with(settings).await;
    app.create_instance("alpha", quick_simulator()).await;

    // Addresses are refused when the webhook is set: the server's own port,
    // a receiver on loopback, IPv6 loopback, loopback written as a number.
    for url in [
        app.url("/instance/fetchInstances"),
        format!("http://127.0.0.1:{}/hook", receiver.port),
        format!("http://[::1]:{}/hook", receiver.port),
        format!("http://[::ffff:127.0.0.1]:{}/hook", receiver.port),
        format!("http://2130706433:{}/hook", receiver.port),
    ] {
        let response = set_hook(&app, &url).await;
        assert_eq!(response.status(), 400, "{url}");
        let body: Value = response.json().await.expect("json");
        let message = body["error"]["message"].as_str().unwrap_or("");
        assert!(
            message.contains("webhooks.allowed_networks"),
            "{url}: {message}"
        );
    }

    // A name is checked once resolved, on every delivery: `localhost` is
    // accepted as a URL but nothing reaches the receiver.
    let set = set_hook(&app, &format!("http://localhost:{}/hook", receiver.port)).await;
    assert_eq!(set.status(), 200);
    app.send_text("alpha", "+15550000001", "for nobody").await;
    let status = failed_status(&app).await;
    let error = status["lastError"].as_str().unwrap_or("");
    assert!(error.contains("not public"), "{status}");
    // The receiver got nothing, and nothing is on its way: the worker is
    // still retrying the very first event.
    assert!(receiver.ids().is_empty());
    assert_eq!(status["delivered"], 0, "{status}");
    app.stop().await;
    receiver.handle.stop(false).await;
}

/// A server on loopback that answers every request with a redirect to
/// `location`, counting the requests.
async fn redirecting(location: String) -> (u16, Arc<Mutex<usize>>, actix_web::dev::ServerHandle) {
    let hits = Arc::new(Mutex::new(0usize));
    let counted = hits.clone();
    let server = HttpServer::new(move || {
        let (hits, location) = (counted.clone(), location.clone());
        App::new().default_service(web::to(move || {
            let (hits, location) = (hits.clone(), location.clone());
            async move {
                *hits.lock() += 1;
                HttpResponse::TemporaryRedirect()
                    .insert_header(("Location", location))
                    .finish()
            }
        }))
    })
    .workers(1)
    .disable_signals()
    .bind(("127.0.0.1", 0))
    .expect("bind");
    let port = server.addrs()[0].port();
    let server = server.run();
    let handle = server.handle();
    tokio::spawn(server);
    (port, hits, handle)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_webhook_does_not_follow_redirects() {
    let db = TestDb::new(Backend::Sqlite).await;
    let target = Receiver::start().await;
    let (port, hits, handle) = redirecting(format!("http://127.0.0.1:{}/hook", target.port)).await;
    let app = TestApp::spawn(&db).await;
    app.create_instance("alpha", quick_simulator()).await;
    let set = set_hook(&app, &format!("http://127.0.0.1:{port}/start")).await;
    assert_eq!(set.status(), 200);
    app.send_text("alpha", "+15550000001", "redirected").await;
    let status = failed_status(&app).await;
    let error = status["lastError"].as_str().unwrap_or("");
    assert!(
        error.contains("307") && error.contains("redirect"),
        "{status}"
    );
    assert!(*hits.lock() >= 1, "the first hop was asked");
    assert!(target.ids().is_empty(), "the redirect was not followed");
    app.stop().await;
    handle.stop(false).await;
    target.handle.stop(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn last_error_does_not_tell_a_closed_port_from_an_open_one() {
    // A closed port: bound, then let go.
    let closed = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.local_addr().expect("addr").port()
    };
    // An open port that speaks something else than HTTP, as an SSH or a
    // database server would, then hangs up.
    let other = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let open = other.local_addr().expect("addr").port();
    let speaker = tokio::spawn(async move {
        use tokio::io::AsyncWriteExt;
        while let Ok((mut socket, _)) = other.accept().await {
            let _ = socket.write_all(b"SSH-2.0-OpenSSH_9.6\r\n").await;
        }
    });

    let mut errors = Vec::new();
    for port in [closed, open] {
        let db = TestDb::new(Backend::Sqlite).await;
        let app = TestApp::spawn(&db).await;
        app.create_instance("alpha", quick_simulator()).await;
        assert_eq!(
            set_hook(&app, &format!("http://127.0.0.1:{port}/hook"))
                .await
                .status(),
            200
        );
        app.send_text("alpha", "+15550000001", "probe").await;
        errors.push(failed_status(&app).await["lastError"].clone());
        app.stop().await;
    }
    speaker.abort();
    assert_eq!(
        errors[0], errors[1],
        "closed: {}, open: {}",
        errors[0], errors[1]
    );
    assert!(errors[0].as_str().is_some_and(|e| !e.is_empty()));
}

/// The README's verification function (the `python` block that defines
/// `verify_switchboard`), as a user would paste it.
fn readme_verifier() -> String {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md"))
        .expect("README.md");
    let start = readme
        .find("```python\nimport hashlib, hmac, time\n\ndef verify_switchboard")
        .expect("the README's verification snippet")
        + "```python\n".len();
    let block = &readme[start..];
    let end = block.find("\n```").expect("the end of the snippet");
    // The function only: the README's own examples print.
    let block = &block[..end];
    let function_end = block.find("\nheaders = ").unwrap_or(block.len());
    block[..function_end].to_owned()
}

/// A webhook receiver in Python that checks every delivery with the
/// README's function, and also checks that the same request with its body
/// changed by one byte, or replayed past the tolerance, fails. It answers
/// 200 when the signature holds and 401 when not, and writes one JSON line
/// per delivery to `record`.
struct PythonReceiver {
    port: u16,
    record: std::path::PathBuf,
    child: tokio::process::Child,
}

impl PythonReceiver {
    async fn start(dir: &std::path::Path, secret: &str) -> PythonReceiver {
        let record = dir.join("deliveries.jsonl");
        let script = format!(
            r#"{verifier}

import http.server, json, sys

SECRET = {secret:?}
RECORD = {record:?}

class Hook(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers["Content-Length"]))
        ok = verify_switchboard(SECRET, self.headers, body)
        tampered = verify_switchboard(SECRET, self.headers, body[:-1] + b" ")
        sent = int(self.headers.get("X-Switchboard-Timestamp") or 0)
        replayed = verify_switchboard(SECRET, self.headers, body, now=sent + 301)
        with open(RECORD, "a") as record:
            record.write(json.dumps({{"id": json.loads(body)["id"], "ok": ok,
                "tampered": tampered, "replayed": replayed,
                "signature": self.headers.get("X-Switchboard-Signature")}}) + "\n")
        self.send_response(200 if ok else 401)
        self.end_headers()

    def log_message(self, *args):
        pass

server = http.server.HTTPServer(("127.0.0.1", 0), Hook)
print(server.server_address[1], flush=True)
server.serve_forever()
"#,
            verifier = readme_verifier(),
            record = record.display().to_string(),
        );
        let mut child = tokio::process::Command::new("python3")
            .arg("-c")
            .arg(script)
            .stdout(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("start python3 (scripts/test.sh installs it)");
        let stdout = child.stdout.take().expect("stdout");
        let mut lines = tokio::io::BufReader::new(stdout);
        let mut line = String::new();
        tokio::time::timeout(
            LONG,
            tokio::io::AsyncBufReadExt::read_line(&mut lines, &mut line),
        )
        .await
        .expect("the receiver says its port")
        .expect("read");
        PythonReceiver {
            port: line.trim().parse().expect("a port"),
            record,
            child,
        }
    }

    fn deliveries(&self) -> Vec<Value> {
        std::fs::read_to_string(&self.record)
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).expect("a JSON line"))
            .collect()
    }
}

on_both_backends! {
    async fn a_receiver_verifies_every_signed_delivery_with_the_readme_snippet_and_a_tampered_body_fails(backend: Backend) {
        let db = TestDb::new(backend).await;
        let secret = "a-long-random-signing-secret";
        let mut receiver = PythonReceiver::start(db.dir.path(), secret).await;
        let app = TestApp::spawn(&db).await;
        app.create_instance("alpha", quick_simulator()).await;
        let set = app
            .admin(Method::POST, "/webhook/set/alpha")
            .json(&json!({ "webhook": {
                "url": format!("http://127.0.0.1:{}/hook", receiver.port),
                "secret": secret,
            }}))
            .send()
            .await
            .expect("send");
        assert_eq!(set.status(), 200);
        let found: Value = set.json().await.expect("json");
        assert_eq!(found["webhook"]["secretSet"], true);
        // The secret is never shown back, nor in the log of events.
        assert!(!found.to_string().contains(secret));

        let mut texts = Vec::new();
        for n in 0..3 {
            let text = format!("signed {n}");
            texts.push((app.send_text("alpha", "+15550000001", &text).await, text));
        }
        let told: Vec<(&str, &str)> = texts.iter().map(|(id, t)| (id.as_str(), t.as_str())).collect();
        wait_delivered_and_echoed(&app, &told).await;
        let start = found["webhook"]["status"]["cursor"].as_i64().expect("cursor");
        let expected: Vec<i64> = app
            .read_log("&instance=alpha")
            .await
            .iter()
            .map(|e| e["id"].as_i64().expect("id"))
            .filter(|id| *id > start)
            .collect();
        assert!(expected.len() >= 15, "{expected:?}");
        let deliveries = wait_for("every event verified at the receiver", LONG, async || {
            let got = receiver.deliveries();
            if got.len() >= expected.len() { Ok(got) } else { Err(format!("{got:?}")) }
        })
        .await;
        // Each delivery verified (so none was retried for a 401), once, in
        // order; the same request with a byte changed, or replayed late, did not.
        let ids: Vec<i64> = deliveries.iter().map(|d| d["id"].as_i64().expect("id")).collect();
        assert_eq!(ids, expected);
        for delivery in &deliveries {
            assert_eq!(
                (&delivery["ok"], &delivery["tampered"], &delivery["replayed"]),
                (&json!(true), &json!(false), &json!(false)),
                "{delivery}"
            );
        }
        // Another body, another signature.
        let mut signatures: Vec<&str> = deliveries.iter().filter_map(|d| d["signature"].as_str()).collect();
        signatures.dedup();
        assert_eq!(signatures.len(), deliveries.len());
        assert!(signatures.iter().all(|s| s.starts_with("v1=") && s.len() == 67));

        // Leaving the secret out keeps it; null removes it, and the receiver
        // then refuses (401) what comes unsigned, so deliveries fail.
        let kept = app
            .admin(Method::POST, "/webhook/set/alpha")
            .json(&json!({ "url": format!("http://127.0.0.1:{}/hook", receiver.port), "events": ["outgoing"] }))
            .send()
            .await
            .expect("send");
        assert_eq!(kept.json::<Value>().await.expect("json")["webhook"]["secretSet"], true);
        let removed = app
            .admin(Method::POST, "/webhook/set/alpha")
            .json(&json!({ "url": format!("http://127.0.0.1:{}/hook", receiver.port), "secret": null }))
            .send()
            .await
            .expect("send");
        assert_eq!(removed.json::<Value>().await.expect("json")["webhook"]["secretSet"], false);
        app.send_text("alpha", "+15550000001", "unsigned").await;
        let status = failed_status(&app).await;
        assert!(status["lastError"].as_str().unwrap_or("").contains("401"), "{status}");
        assert!(receiver.deliveries().iter().any(|d| d["ok"] == false));
        app.stop().await;
        receiver.child.kill().await.expect("stop the receiver");
    }
}

/// A receiver that answers every delivery with `status`, counting them.
async fn answering(status: u16) -> (u16, Arc<Mutex<Vec<i64>>>, actix_web::dev::ServerHandle) {
    let hits = Arc::new(Mutex::new(Vec::new()));
    let counted = hits.clone();
    let server = HttpServer::new(move || {
        let hits = counted.clone();
        App::new().default_service(web::to(move |body: web::Bytes| {
            let hits = hits.clone();
            async move {
                let event: Value = serde_json::from_slice(&body).unwrap_or_default();
                hits.lock().push(event["id"].as_i64().unwrap_or(-1));
                HttpResponse::build(
                    actix_web::http::StatusCode::from_u16(status).expect("a status"),
                )
                .finish()
            }
        }))
    })
    .workers(1)
    .disable_signals()
    .bind(("127.0.0.1", 0))
    .expect("bind");
    let port = server.addrs()[0].port();
    let server = server.run();
    let handle = server.handle();
    tokio::spawn(server);
    (port, hits, handle)
}

on_both_backends! {
    async fn a_receiver_that_answers_410_gone_stops_the_retries_until_the_webhook_is_set_again(backend: Backend) {
        let db = TestDb::new(backend).await;
        let (port, hits, gone) = answering(410).await;
        let app = TestApp::spawn(&db).await;
        app.create_instance("alpha", quick_simulator()).await;
        assert_eq!(set_hook(&app, &format!("http://127.0.0.1:{port}/hook")).await.status(), 200);
        app.send_text("alpha", "+15550000001", "to nobody").await;
        let status = wait_for("the webhook to stop", LONG, async || {
            let found: Value = app.get_json("/webhook/find/alpha").await;
            let status = found["webhook"]["status"].clone();
            if status["stopped"].is_string() { Ok(status) } else { Err(status) }
        })
        .await;
        let stopped = status["stopped"].as_str().unwrap_or("");
        assert!(stopped.contains("410 Gone") && stopped.contains("deliveries stopped"), "{status}");
        assert_eq!(status["nextRetryAt"], Value::Null, "{status}");
        assert_eq!(metric(&app, "switchboard_webhook_stopped_total").await, 1);
        let first = hits.lock().clone();
        assert_eq!(first.len(), 1, "{first:?}");

        // More events, and a restart: nobody knocks again, and find still
        // says why. (A retry would have come after 0.5 s, 1 s, 2 s...)
        let later = app.send_text("alpha", "+15550000001", "still nobody").await;
        wait_delivered_and_echoed(&app, &[(&later, "still nobody")]).await;
        app.stop().await;
        let app = TestApp::spawn(&db).await;
        let found: Value = app.get_json("/webhook/find/alpha").await;
        assert_eq!(found["webhook"]["status"]["stopped"], status["stopped"], "{found}");
        let again = app.send_text("alpha", "+15550000001", "after the restart").await;
        wait_delivered_and_echoed(&app, &[(&again, "after the restart")]).await;
        assert_eq!(*hits.lock(), first, "no delivery was tried after the 410");

        // Set again, at a receiver that takes them: it resumes from the
        // event that got the 410, skipping nothing.
        let receiver = Receiver::start().await;
        assert_eq!(set_hook(&app, &format!("http://127.0.0.1:{}/hook", receiver.port)).await.status(), 200);
        wait_for("the stopped event and the rest delivered", LONG, async || {
            receiver.ids().first() == first.first() && receiver.ids().len() >= 10
        })
        .await;
        let found: Value = app.get_json("/webhook/find/alpha").await;
        assert_eq!(found["webhook"]["status"]["stopped"], Value::Null, "{found}");
        app.stop().await;
        gone.stop(false).await;
        receiver.handle.stop(false).await;
    }
}
