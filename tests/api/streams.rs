//! SSE, scoped tokens and the limits that protect streams.

use std::time::Duration;

use reqwest::Method;
use serde_json::{json, Value};

use crate::helpers::*;
use crate::on_both_backends;

async fn mint(app: &TestApp, key: &str, body: Value) -> (u16, Value) {
    let response = app
        .with_key(Method::POST, "/auth/token", key)
        .json(&body)
        .send()
        .await
        .expect("send");
    let status = response.status().as_u16();
    (status, response.json().await.expect("json"))
}

on_both_backends! {
    async fn sse_streams_events_with_ids_and_resumes_from_last_event_id(backend: Backend) {
        let db = TestDb::new(backend).await;
        let mut settings = test_settings(&db);
        settings.http.sse_heartbeat_secs = 1;
        settings.http.sse_retry_ms = 2500;
        let app = TestApp::spawn_with(settings).await;
        let path = format!("/events/stream?apikey={}&events=incoming", app.admin_key);
        let mut sse = SseClient::open(&app, &path, None).await;
        match sse.next_item(WAIT).await {
            Some(SseItem::Retry(ms)) => assert_eq!(ms, 2500),
            other => panic!("the stream opens with retry:, got {other:?}"),
        }
        append_messages(&app.log, "alpha", 10, 10, 20).await;
        let mut ids = Vec::new();
        for _ in 0..5 {
            let event = sse.event(WAIT).await;
            assert_eq!(event.event.as_deref(), Some("message"));
            let envelope: Value = serde_json::from_str(&event.data).expect("data is the envelope");
            assert_eq!(envelope["instance"], "alpha");
            assert_eq!(event.id.as_deref(), Some(envelope["id"].to_string().as_str()));
            ids.push(envelope["id"].as_i64().expect("id"));
        }
        drop(sse);

        // EventSource reconnects with Last-Event-ID (its URL has no since).
        let mut sse = SseClient::open(&app, &path, Some(ids[4])).await;
        let mut rest = Vec::new();
        for _ in 0..5 {
            rest.push(sse.event(WAIT).await.id.expect("id").parse::<i64>().expect("number"));
        }
        assert_eq!(rest, (ids[4] + 1..=ids[4] + 5).collect::<Vec<_>>());
        // Idle streams carry comment heartbeats.
        loop {
            match sse.next_item(Duration::from_secs(5)).await {
                Some(SseItem::Comment(text)) if text == "keepalive" => break,
                Some(SseItem::Event(e)) => panic!("unexpected event {e:?}"),
                _ => continue,
            }
        }

        // A page on another origin may read the stream (CORS).
        let cors = app
            .http
            .get(app.url(&path))
            .header("Origin", "https://dashboard.example")
            .send()
            .await
            .expect("send");
        assert_eq!(
            cors.headers().get("access-control-allow-origin").and_then(|v| v.to_str().ok()),
            Some("https://dashboard.example")
        );
        drop(cors);
        let preflight = app
            .http
            .request(Method::OPTIONS, app.url("/events/stream"))
            .header("Origin", "https://dashboard.example")
            .header("Access-Control-Request-Headers", "last-event-id")
            .send()
            .await
            .expect("send");
        assert_eq!(preflight.status(), 204);
        assert!(preflight
            .headers()
            .get("access-control-allow-headers")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|h| h.contains("Last-Event-ID")));

        // Refusals are plain HTTP errors an EventSource reports.
        let refused = app.http.get(app.url("/events/stream?apikey=wrong")).send().await.expect("send");
        assert_eq!(refused.status(), 401);
        let bad = app
            .http
            .get(app.url(&format!("/events/stream?apikey={}&events=nope", app.admin_key)))
            .send()
            .await
            .expect("send");
        assert_eq!(bad.status(), 400);
        let bad_id = app
            .http
            .get(app.url(&path))
            .header("Last-Event-ID", "abc")
            .send()
            .await
            .expect("send");
        assert_eq!(bad_id.status(), 400);
        app.stop().await;
    }

    async fn tokens_grant_only_what_they_name_and_refresh_in_band(backend: Backend) {
        let db = TestDb::new(backend).await;
        let app = TestApp::spawn(&db).await;
        let alpha_key = app.create_instance("alpha", quick_simulator()).await;
        app.create_instance("beta", quick_simulator()).await;

        // An instance key mints for its own instance only.
        let (status, body) = mint(&app, &alpha_key, json!({ "instances": ["beta"] })).await;
        assert_eq!((status, body["error"]["code"].as_str()), (403, Some("PERMISSION_DENIED")));
        let (status, _) = mint(&app, &alpha_key, json!({ "instances": "*" })).await;
        assert_eq!(status, 403);
        let (status, body) = mint(&app, &alpha_key, json!({ "events": ["message"], "ttlSecs": 60 })).await;
        assert_eq!(status, 201, "{body}");
        assert_eq!(body["instances"], json!(["alpha"]));
        let alpha_token = body["token"].as_str().expect("token").to_owned();
        // Nothing else about it is secret, and the key is not in it.
        assert!(!alpha_token.contains(&alpha_key));
        // Bad requests.
        for bad in [json!({ "ttlSecs": 0 }), json!({ "ttlSecs": 10_000_000 }), json!({ "events": ["nope"] })] {
            assert_eq!(mint(&app, &alpha_key, bad.clone()).await.0, 400, "{bad}");
        }
        // Tokens do not manage instances.
        let refused = app
            .with_key(Method::GET, "/instance/fetchInstances", &alpha_token)
            .send()
            .await
            .expect("send");
        assert_eq!(refused.status(), 401);

        // A token stream sees its instance and events only.
        let mut ws = app.ws(&format!("/ws?token={alpha_token}")).await;
        app.send_text("beta", "+15550000001", "not yours").await;
        app.send_text("alpha", "+15550000002", "yours").await;
        let got = ws
            .events_until(WAIT, |e| e.iter().any(|e| e["data"]["content"] == "Echo: yours"))
            .await;
        assert!(got.iter().all(|e| e["instance"] == "alpha" && e["event"] == "message"), "{got:?}");
        // The same token over SSE.
        let mut sse = SseClient::open(&app, &format!("/events/stream?token={alpha_token}"), Some(0)).await;
        let first = sse.event(WAIT).await;
        assert_eq!(first.event.as_deref(), Some("message"));

        // Expiry closes the stream with TOKEN_EXPIRED and 4010...
        let (_, short) = mint(&app, &app.admin_key, json!({ "instances": ["alpha"], "ttlSecs": 2 })).await;
        let short = short["token"].as_str().expect("token").to_owned();
        let mut expiring = app.ws(&format!("/ws/alpha?token={short}")).await;
        let error = expiring.control(Duration::from_secs(10)).await;
        assert_eq!(error["data"]["code"], "TOKEN_EXPIRED");
        assert_eq!(expiring.closed(WAIT).await.0, 4010);
        // ...and an expired token is refused at the door.
        let mut late = app.ws(&format!("/ws?token={short}")).await;
        assert_eq!(late.json(WAIT).await["data"]["code"], "TOKEN_EXPIRED");
        assert_eq!(late.closed(WAIT).await.0, 4010);

        // A refresh before expiry keeps the connection open past it. A twin
        // opened with the same token and not refreshed marks the expiry.
        let (_, short) = mint(&app, &app.admin_key, json!({ "instances": ["alpha"], "ttlSecs": 2 })).await;
        let short = short["token"].as_str().expect("token").to_owned();
        let mut refreshed = app.ws(&format!("/ws/alpha?token={short}&events=outgoing")).await;
        let mut twin = app.ws(&format!("/ws/alpha?token={short}&events=outgoing")).await;
        let (_, fresh) = mint(&app, &app.admin_key, json!({ "instances": ["alpha"], "ttlSecs": 60 })).await;
        refreshed
            .send_json(json!({ "action": "refresh", "token": fresh["token"] }))
            .await;
        let ack = refreshed.control(WAIT).await;
        assert_eq!(ack["type"], "refreshed", "{ack}");
        // The short token has expired once its unrefreshed twin is closed.
        assert_eq!(twin.control(WAIT).await["data"]["code"], "TOKEN_EXPIRED");
        assert_eq!(twin.closed(WAIT).await.0, 4010);
        app.send_text("alpha", "+15550000003", "still connected").await;
        assert_eq!(refreshed.event(WAIT).await["data"]["content"], "still connected");
        // A garbage refresh is refused without closing.
        refreshed.send_json(json!({ "action": "refresh", "token": "x.y.z" })).await;
        assert_eq!(refreshed.control(WAIT).await["data"]["code"], "AUTH_FAILED");
        refreshed.send_json(json!({ "type": "ping" })).await;
        assert_eq!(refreshed.control(WAIT).await["type"], "pong");
        app.stop().await;
    }

    async fn each_limit_answers_with_its_documented_code(backend: Backend) {
        let db = TestDb::new(backend).await;
        let mut settings = test_settings(&db);
        settings.limits.max_connections = 4;
        settings.limits.max_connections_per_credential = 2;
        settings.limits.client_messages_per_sec = 2;
        settings.limits.client_message_burst = 3;
        settings.limits.failed_auth_per_minute = 3;
        settings.limits.max_message_size = 1024;
        let app = TestApp::spawn_with(settings).await;
        let alpha_key = app.create_instance("alpha", quick_simulator()).await;
        let admin = format!("/ws?apikey={}", app.admin_key);

        // Per credential: a third admin stream is refused; another key is not.
        let a1 = app.ws(&admin).await;
        let _a2 = app.ws(&admin).await;
        let mut a3 = app.ws(&admin).await;
        assert_eq!(a3.json(WAIT).await["data"]["code"], "CONNECTION_LIMIT");
        assert_eq!(a3.closed(WAIT).await.0, 1013);
        let sse_refused = app.http.get(app.url(&format!("/events/stream?apikey={}", app.admin_key))).send().await.expect("send");
        // The credential's own quota: 429, not a server error.
        assert_eq!(sse_refused.status(), 429);
        let _b1 = app.ws(&format!("/ws?apikey={alpha_key}")).await;
        let _b2 = app.ws(&format!("/ws?apikey={alpha_key}")).await;
        // In total: four are open; a fifth is refused whatever its key.
        let (_, token) = mint(&app, &app.admin_key, json!({})).await;
        let mut t1 = app.ws(&format!("/ws?token={}", token["token"].as_str().expect("token"))).await;
        assert_eq!(t1.json(WAIT).await["data"]["code"], "CONNECTION_LIMIT");
        // The server's own maximum: 503, retry later.
        let full = app.http.get(app.url(&format!("/events/stream?apikey={}", app.admin_key))).send().await.expect("send");
        assert_eq!(full.status(), 503);
        // A place freed is a place taken. (With one worker, the server drops
        // a stream's place with its subscription, before it can admit another.)
        let open = metric(&app, "switchboard_connections").await;
        a1.close().await;
        wait_for("the closed stream to give its place back", WAIT, async || {
            metric(&app, "switchboard_connections").await < open
        })
        .await;
        let mut again = app.ws(&admin).await;
        again.send_json(json!({ "type": "ping" })).await;
        assert_eq!(again.control(WAIT).await["type"], "pong");

        // Message rate: a burst of 3, then RATE_LIMITED answers; a flood closes.
        let mut answers = Vec::new();
        for _ in 0..6 {
            again.send_json(json!({ "type": "ping" })).await;
        }
        for _ in 0..6 {
            answers.push(again.control(WAIT).await);
        }
        let limited = answers.iter().filter(|a| a["data"]["code"] == "RATE_LIMITED").count();
        assert!(limited >= 2, "{answers:?}");
        for _ in 0..40 {
            again.send_json(json!({ "type": "ping" })).await;
        }
        assert_eq!(again.closed(WAIT).await.0, 4029);

        // Message size.
        drop(_b2);
        // Left open: one admin stream and one of alpha's.
        wait_for("the dropped stream to give its place back", WAIT, async || {
            let open = metric(&app, "switchboard_connections").await;
            if open == 2 {
                Ok(())
            } else {
                Err(format!("{open} streams open"))
            }
        })
        .await;
        let mut big = app.ws(&format!("/ws?apikey={alpha_key}")).await;
        big.send_json(json!({ "type": "ping", "pad": "x".repeat(2000) })).await;
        assert_eq!(big.closed(WAIT).await.0, 1009);

        // Failed authentications: after three, further wrong keys are
        // refused as RATE_LIMITED; the right key still works.
        for _ in 0..3 {
            let wrong = app.with_key(Method::GET, "/instance/fetchInstances", "wrong").send().await.expect("send");
            assert_eq!(wrong.status(), 401);
        }
        let limited = app.with_key(Method::GET, "/instance/fetchInstances", "wrong").send().await.expect("send");
        assert_eq!(limited.status(), 429);
        let body: Value = limited.json().await.expect("json");
        assert_eq!(body["error"]["code"], "RATE_LIMITED");
        let mut ws = app.ws("/ws?apikey=wrong").await;
        assert_eq!(ws.json(WAIT).await["data"]["code"], "RATE_LIMITED");
        assert_eq!(ws.closed(WAIT).await.0, 4029);
        let right = app.admin(Method::GET, "/instance/fetchInstances").send().await.expect("send");
        assert_eq!(right.status(), 200);
        app.stop().await;
    }
}
