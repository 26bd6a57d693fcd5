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
