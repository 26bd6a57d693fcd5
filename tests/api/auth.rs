//! Credentials: wrong keys are refused, and an instance key sees and acts
//! on its own instance only, over REST and WebSocket alike.

use reqwest::Method;
use serde_json::{json, Value};
use switchboard::event::data::Direction;

use crate::helpers::*;
use crate::on_both_backends;

async fn status_and_code(response: reqwest::Response) -> (u16, String) {
    let status = response.status().as_u16();
    let body: Value = response.json().await.expect("error bodies are JSON");
    (
        status,
        body["error"]["code"].as_str().unwrap_or("").to_owned(),
    )
}

on_both_backends! {
    async fn wrong_keys_are_refused_over_rest_and_websocket(backend: Backend) {
        let db = TestDb::new(backend).await;
        let app = TestApp::spawn(&db).await;

        let none = app.http.get(app.url("/instance/fetchInstances")).send().await.expect("send");
        assert_eq!(status_and_code(none).await, (401, "AUTH_FAILED".into()));
        let wrong = app
            .with_key(Method::GET, "/instance/fetchInstances", "not-the-key")
            .send()
            .await
            .expect("send");
        let (status, code) = status_and_code(wrong).await;
        assert_eq!((status, code.as_str()), (401, "AUTH_FAILED"));
        let bearer = app
            .http
            .get(app.url("/instance/fetchInstances"))
            .header("Authorization", format!("Bearer {}", app.admin_key))
            .send()
            .await
            .expect("send");
        assert_eq!(bearer.status(), 200);

        for path in ["/ws?apikey=not-the-key", "/ws", "/?apikey=nope", "/ws/alpha?apikey=nope"] {
            let mut ws = app.ws(path).await;
            let error = ws.json(WAIT).await;
            assert_eq!(error["type"], "error", "{path}: {error}");
            assert_eq!(error["data"]["code"], "AUTH_FAILED", "{path}");
            // The key never comes back in an error body.
            assert!(!error.to_string().contains("not-the-key"));
            let (code, _) = ws.closed(WAIT).await;
            assert_eq!(code, 1008, "{path}");
        }
        app.stop().await;
    }

    async fn an_instance_key_sees_and_acts_on_its_own_instance_only(backend: Backend) {
        let db = TestDb::new(backend).await;
        let app = TestApp::spawn(&db).await;
        let alpha_key = app.create_instance("alpha", quick_simulator()).await;
        app.create_instance("beta", quick_simulator()).await;

        // REST: its own instance works...
        let own = app
            .with_key(Method::GET, "/instance/connectionState/alpha", &alpha_key)
            .send()
            .await
            .expect("send");
        assert_eq!(own.status(), 200);
        let listed: Value = app
            .with_key(Method::GET, "/instance/fetchInstances", &alpha_key)
            .send()
            .await
            .expect("send")
            .json()
            .await
            .expect("json");
        let names: Vec<&str> = listed
            .as_array()
            .expect("list")
            .iter()
            .map(|i| i["instance"]["instanceName"].as_str().unwrap_or(""))
            .collect();
        assert_eq!(names, ["alpha"]);
        let sent = app
            .with_key(Method::POST, "/message/sendText/alpha", &alpha_key)
            .json(&json!({ "number": "+15550001111", "text": "mine" }))
            .send()
            .await
            .expect("send");
        assert_eq!(sent.status(), 201);

        // ...another instance's routes do not, whether it exists or not.
        for (method, path, body) in [
            (Method::GET, "/instance/connectionState/beta", None),
            (Method::GET, "/instance/connectionState/gamma", None),
            (Method::POST, "/message/sendText/beta", Some(json!({ "number": "+15550001111", "text": "x" }))),
            (Method::DELETE, "/instance/logout/beta", None),
            (Method::GET, "/events?instance=beta", None),
            (Method::GET, "/group/fetchAllGroups/beta", None),
        ] {
            let mut request = app.with_key(method, path, &alpha_key);
            if let Some(body) = body {
                request = request.json(&body);
            }
            let (status, code) = status_and_code(request.send().await.expect("send")).await;
            assert_eq!((status, code.as_str()), (403, "PERMISSION_DENIED"), "{path}");
        }
        // Instance management is for the admin key.
        for (method, path) in [(Method::POST, "/instance/create"), (Method::DELETE, "/instance/delete/alpha")] {
            let (status, code) = status_and_code(
                app.with_key(method, path, &alpha_key)
                    .json(&json!({ "instanceName": "delta" }))
                    .send()
                    .await
                    .expect("send"),
            )
            .await;
            assert_eq!((status, code.as_str()), (403, "PERMISSION_DENIED"), "{path}");
        }
        // The log as seen through alpha's key holds alpha's events only.
        let events: Value = app
            .with_key(Method::GET, "/events?limit=1000", &alpha_key)
            .send()
            .await
            .expect("send")
            .json()
            .await
            .expect("json");
        let events = events["events"].as_array().expect("events");
        assert!(!events.is_empty());
        assert!(events.iter().all(|e| e["instance"] == "alpha"), "{events:?}");

        // WebSocket: another instance's stream is refused...
        let mut ws = app.ws(&format!("/ws/beta?apikey={alpha_key}")).await;
        assert_eq!(ws.json(WAIT).await["data"]["code"], "PERMISSION_DENIED");
        assert_eq!(ws.closed(WAIT).await.0, 1008);
        let mut ws = app.ws(&format!("/ws?apikey={alpha_key}&instances=alpha,beta")).await;
        assert_eq!(ws.json(WAIT).await["data"]["code"], "PERMISSION_DENIED");
        assert_eq!(ws.closed(WAIT).await.0, 1008);

        // ...and /ws with the key sees only alpha, even when both are busy.
        let mut ws = app.ws(&format!("/ws?apikey={alpha_key}&events=message")).await;
        let beta_text = app.send_text("beta", "+15550002222", "not for alpha").await;
        let alpha_text = app.send_text("alpha", "+15550003333", "for alpha").await;
        let got = ws
            .events_until(WAIT, |e| e.iter().any(|e| e["data"]["content"] == "Echo: for alpha"))
            .await;
        assert!(got.iter().all(|e| e["instance"] == "alpha"), "{got:?}");
        assert!(got.iter().any(|e| e["data"]["content"] == "for alpha"));
        // Subscribing to beta at run time is refused without closing.
        ws.send_json(json!({ "action": "subscribe", "instances": ["beta"] })).await;
        let refused = ws.control(WAIT).await;
        assert_eq!(refused["data"]["code"], "PERMISSION_DENIED");
        ws.send_json(json!({ "type": "ping" })).await;
        assert_eq!(ws.control(WAIT).await["type"], "pong");
        // Nothing of beta's: once its text's story is in the log, the next
        // event is a marker on alpha appended after it.
        wait_delivered_and_echoed(&app, &[(&beta_text, "not for alpha"), (&alpha_text, "for alpha")]).await;
        let marker = append_marker(&app.log, "alpha", marker_message(Direction::Incoming, "marker")).await;
        ws.assert_next_is_marker(marker).await;
        ws.close().await;

        // No key appears anywhere in the log (invariant 7).
        let log = app.read_log("").await;
        let text = serde_json::to_string(&log).expect("json");
        assert!(!text.contains(&alpha_key));
        assert!(!text.contains(&app.admin_key));
        app.stop().await;
    }
}

on_both_backends! {
    async fn browsers_from_origins_not_on_the_allowlist_are_refused(backend: Backend) {
        use tokio_tungstenite::tungstenite::client::IntoClientRequest;

        let db = TestDb::new(backend).await;
        let mut settings = test_settings(&db);
        settings.http.allowed_origins = vec!["https://app.example.com".into()];
        let app = TestApp::spawn_with(settings).await;
        let url = app.ws_url(&format!("/ws?apikey={}", app.admin_key));

        let mut evil = url.as_str().into_client_request().expect("request");
        evil.headers_mut().insert("Origin", "https://evil.example".parse().expect("header"));
        match tokio_tungstenite::connect_async(evil).await {
            Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
                assert_eq!(response.status(), 403);
            }
            other => panic!("expected a 403, got {:?}", other.map(|(_, r)| r.status())),
        }

        let mut good = url.as_str().into_client_request().expect("request");
        good.headers_mut().insert("Origin", "https://app.example.com".parse().expect("header"));
        let (mut ws, _) = tokio_tungstenite::connect_async(good).await.expect("allowed origin");
        ws.close(None).await.expect("close");
        // Clients that send no Origin (servers, scripts) are not affected.
        app.ws(&format!("/ws?apikey={}", app.admin_key)).await.close().await;
        app.stop().await;
    }
}
