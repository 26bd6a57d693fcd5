//! Bad input gets the documented error, and the server keeps serving.

use futures_util::SinkExt;
use reqwest::Method;
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;

use crate::helpers::*;
use crate::on_both_backends;

async fn error_of(response: reqwest::Response) -> (u16, String, String) {
    let status = response.status().as_u16();
    let body: Value = response.json().await.expect("error bodies are JSON");
    (
        status,
        body["error"]["code"].as_str().unwrap_or("").to_owned(),
        body["error"]["message"].as_str().unwrap_or("").to_owned(),
    )
}

on_both_backends! {
    async fn bad_requests_get_documented_errors_and_the_server_keeps_serving(backend: Backend) {
        let db = TestDb::new(backend).await;
        let mut settings = test_settings(&db);
        settings.limits.max_message_size = 4096;
        settings.limits.max_body_bytes = 8192;
        let app = TestApp::spawn_with(settings).await;
        app.create_instance("alpha", quick_simulator()).await;

        // Malformed JSON.
        let (status, code, _) = error_of(
            app.admin(Method::POST, "/instance/create")
                .header("content-type", "application/json")
                .body("{\"instanceName\": ")
                .send()
                .await
                .expect("send"),
        )
        .await;
        assert_eq!((status, code.as_str()), (400, "BAD_REQUEST"));
        // A required field missing, a wrong type.
        for body in [json!({}), json!({ "instanceName": 5 }), json!({ "instanceName": "x", "driver": { "kind": "warp" } })] {
            let (status, code, _) = error_of(
                app.admin(Method::POST, "/instance/create").json(&body).send().await.expect("send"),
            )
            .await;
            assert_eq!((status, code.as_str()), (400, "BAD_REQUEST"), "{body}");
        }
        // A driver setting out of range names the field.
        let (status, _, message) = error_of(
            app.admin(Method::POST, "/instance/create")
                .json(&json!({ "instanceName": "x", "driver": { "kind": "simulator", "rate": -3 } }))
                .send()
                .await
                .expect("send"),
        )
        .await;
        assert_eq!(status, 400);
        assert!(message.contains("rate"), "{message}");
        // Unknown routes and wrong methods.
        let (status, code, _) =
            error_of(app.admin(Method::GET, "/no/such/route").send().await.expect("send")).await;
        assert_eq!((status, code.as_str()), (404, "NOT_FOUND"));
        let (status, code, _) =
            error_of(app.admin(Method::DELETE, "/message/sendText/alpha").send().await.expect("send")).await;
        assert_eq!((status, code.as_str()), (405, "METHOD_NOT_ALLOWED"));
        // Invalid instance names, in a body and in a path.
        for name in ["", "has space", "-dash", &"x".repeat(65), "ünï"] {
            let (status, code, _) = error_of(
                app.admin(Method::POST, "/instance/create")
                    .json(&json!({ "instanceName": name }))
                    .send()
                    .await
                    .expect("send"),
            )
            .await;
            assert_eq!((status, code.as_str()), (400, "BAD_REQUEST"), "{name:?}");
        }
        let (status, code, _) = error_of(
            app.admin(Method::GET, "/instance/connectionState/bad.name").send().await.expect("send"),
        )
        .await;
        assert_eq!((status, code.as_str()), (400, "BAD_REQUEST"));
        // Unknown instance, taken name.
        let (status, code, _) = error_of(
            app.admin(Method::GET, "/instance/connectionState/ghost").send().await.expect("send"),
        )
        .await;
        assert_eq!((status, code.as_str()), (404, "NOT_FOUND"));
        let (status, code, _) = error_of(
            app.admin(Method::POST, "/instance/create")
                .json(&json!({ "instanceName": "alpha" }))
                .send()
                .await
                .expect("send"),
        )
        .await;
        assert_eq!((status, code.as_str()), (409, "CONFLICT"));
        // Bad messages.
        for body in [
            json!({ "number": "not a number", "text": "x" }),
            json!({ "number": "+15550001111", "text": "" }),
            json!({ "number": "+15550001111" }),
            json!({ "number": "+15550001111", "text": "x".repeat(5000) }),
        ] {
            let (status, code, _) = error_of(
                app.admin(Method::POST, "/message/sendText/alpha").json(&body).send().await.expect("send"),
            )
            .await;
            assert_eq!((status, code.as_str()), (400, "BAD_REQUEST"), "{body}");
        }
        // An oversized body.
        let (status, code, _) = error_of(
            app.admin(Method::POST, "/message/sendText/alpha")
                .json(&json!({ "number": "+15550001111", "text": "x".repeat(10_000) }))
                .send()
                .await
                .expect("send"),
        )
        .await;
        assert_eq!((status, code.as_str()), (413, "PAYLOAD_TOO_LARGE"));
        // Bad query values.
        for query in ["/events?since=-1", "/events?limit=0", "/events?limit=abc", "/events?events=bogus", "/events?instance=bad.name"] {
            let (status, code, _) = error_of(app.admin(Method::GET, query).send().await.expect("send")).await;
            assert_eq!((status, code.as_str()), (400, "BAD_REQUEST"), "{query}");
        }

        // WebSocket: an unknown event name is an error, not a silent stream.
        let mut ws = app.ws(&format!("/ws?apikey={}&events=message,bogus", app.admin_key)).await;
        let error = ws.json(WAIT).await;
        assert_eq!(error["data"]["code"], "BAD_REQUEST");
        assert!(error["data"]["message"].as_str().unwrap_or("").contains("bogus"));
        assert_eq!(ws.closed(WAIT).await.0, 1008);
        // Unknown instance on /ws/{instance}; an invalid name.
        let mut ws = app.ws(&format!("/ws/ghost?apikey={}", app.admin_key)).await;
        assert_eq!(ws.json(WAIT).await["data"]["code"], "NOT_FOUND");
        assert_eq!(ws.closed(WAIT).await.0, 1008);
        // Invalid JSON and unknown actions are answered, and the connection lives.
        let mut ws = app.ws(&format!("/ws?apikey={}", app.admin_key)).await;
        ws.stream.send(Message::Text("{not json".into())).await.expect("send");
        assert_eq!(ws.control(WAIT).await["data"]["code"], "BAD_REQUEST");
        ws.send_json(json!({ "action": "dance" })).await;
        assert_eq!(ws.control(WAIT).await["data"]["code"], "BAD_REQUEST");
        ws.send_json(json!({ "action": "subscribe", "events": ["bogus"] })).await;
        assert_eq!(ws.control(WAIT).await["data"]["code"], "BAD_REQUEST");
        ws.send_json(json!({ "type": "ping" })).await;
        assert_eq!(ws.control(WAIT).await["type"], "pong");
        // An oversized frame closes with 1009.
        ws.stream
            .send(Message::Text("x".repeat(10_000).into()))
            .await
            .expect("send");
        assert_eq!(ws.closed(WAIT).await.0, 1009);
        // A plain GET on /ws explains itself.
        let (status, code, _) = error_of(app.admin(Method::GET, "/ws").send().await.expect("send")).await;
        assert_eq!((status, code.as_str()), (400, "BAD_REQUEST"));

        // Still serving.
        let health = app.http.get(app.url("/health")).send().await.expect("send");
        assert_eq!(health.status(), 200);
        app.send_text("alpha", "+15550001111", "still here").await;
        app.stop().await;
    }
}
