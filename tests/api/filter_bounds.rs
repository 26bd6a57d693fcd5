//! A stream's filter is bounded (issue 9, item 8): it names only instances
//! that exist, no more than `limits.max_filter_instances`, and every
//! acknowledgement says what changed in a few bytes instead of repeating
//! the whole filter.

use serde_json::{json, Value};

use crate::helpers::*;
use crate::on_both_backends;

/// The error code of the next control message.
async fn refused(ws: &mut WsClient, message: Value) -> (String, String) {
    ws.send_json(message).await;
    let reply = ws.control(WAIT).await;
    assert_eq!(reply["type"], "error", "{reply}");
    (
        reply["data"]["code"].as_str().unwrap_or("").to_owned(),
        reply["data"]["message"].as_str().unwrap_or("").to_owned(),
    )
}

/// The acknowledgement of a filter change, and its size on the wire.
async fn acknowledged(ws: &mut WsClient, message: Value) -> (Value, usize) {
    ws.send_json(message).await;
    let reply = ws.control(WAIT).await;
    let size = reply.to_string().len();
    assert!(
        reply["type"]
            .as_str()
            .is_some_and(|t| t.ends_with("subscribed")),
        "{reply}"
    );
    (reply["data"].clone(), size)
}

on_both_backends! {
    async fn filters_refuse_unknown_instances_and_stop_at_their_cap(backend: Backend) {
        let db = TestDb::new(backend).await;
        let mut settings = test_settings(&db);
        settings.limits.max_filter_instances = 3;
        let app = TestApp::spawn_with(settings).await;
        for name in ["alpha", "beta", "gamma", "delta"] {
            app.create_instance(name, quick_simulator()).await;
        }
        let key = app.admin_key.clone();

        // Instances that do not exist are refused, added or removed.
        let mut everything = app.ws(&format!("/ws?apikey={key}")).await;
        let (code, message) = refused(&mut everything, json!({ "action": "subscribe", "instances": ["ghost"] })).await;
        assert_eq!(code, "NOT_FOUND", "{message}");
        assert!(message.contains("ghost"), "{message}");
        let (code, _) = refused(&mut everything, json!({ "action": "unsubscribe", "instances": ["ghost"] })).await;
        assert_eq!(code, "NOT_FOUND");
        // A million names in one message never get looked at one by one.
        let many: Vec<String> = (0..3000).map(|i| format!("ghost-{i}")).collect();
        let (code, message) = refused(&mut everything, json!({ "action": "unsubscribe", "instances": many })).await;
        assert_eq!(code, "BAD_REQUEST");
        assert!(message.contains("max_filter_instances"), "{message}");

        // "Everything but": the exceptions count against the cap too.
        let (ack, _) = acknowledged(&mut everything, json!({ "action": "unsubscribe", "instances": ["alpha", "beta"] })).await;
        assert_eq!(ack["instances"], json!({ "scope": "all_except", "count": 2, "changed": 2 }));
        let (ack, _) = acknowledged(&mut everything, json!({ "action": "unsubscribe", "instances": ["gamma"] })).await;
        assert_eq!(ack["instances"], json!({ "scope": "all_except", "count": 3, "changed": 1 }));
        let (code, _) = refused(&mut everything, json!({ "action": "unsubscribe", "instances": ["delta"] })).await;
        assert_eq!(code, "BAD_REQUEST");
        // Refused means unchanged: delta's events still arrive.
        let delta = app.send_text("delta", "+15550000001", "still watched").await;
        let got = everything
            .events_until(WAIT, |e| e.iter().any(|e| e["data"]["id"] == delta.as_str()))
            .await;
        assert!(got.iter().all(|e| e["instance"] == "delta"), "{got:?}");

        // A list of instances: up to the cap, each acknowledgement small.
        let mut some = app.ws(&format!("/ws?apikey={key}&instances=alpha")).await;
        let mut sizes = Vec::new();
        for (name, count) in [("beta", 2), ("gamma", 3)] {
            let (ack, size) = acknowledged(&mut some, json!({ "action": "subscribe", "instances": [name] })).await;
            assert_eq!(ack["instances"], json!({ "scope": "only", "count": count, "changed": 1 }));
            sizes.push(size);
        }
        assert_eq!(sizes[0], sizes[1], "an acknowledgement does not grow with the filter");
        let (code, _) = refused(&mut some, json!({ "action": "subscribe", "instances": ["delta"] })).await;
        assert_eq!(code, "BAD_REQUEST");
        // Seed 004's resource names an instance too.
        let (ack, _) = acknowledged(&mut some, json!({ "action": "unsubscribe", "resource": "gamma" })).await;
        assert_eq!(ack["instances"], json!({ "scope": "only", "count": 2, "changed": 1 }));
        let (code, _) = refused(&mut some, json!({ "action": "subscribe", "resource": "ghost" })).await;
        assert_eq!(code, "NOT_FOUND");

        // The same rules at the door.
        for (query, code) in [
            ("instances=ghost", "NOT_FOUND"),
            ("instances=alpha,beta,gamma,delta", "BAD_REQUEST"),
        ] {
            let mut ws = app.ws(&format!("/ws?apikey={key}&{query}")).await;
            assert_eq!(ws.json(WAIT).await["data"]["code"], code, "{query}");
            assert_eq!(ws.closed(WAIT).await.0, 1008, "{query}");
        }
        // A stream on one instance's path names no others (they were
        // ignored, and the client watched another set than it asked for).
        let mut one = app.ws(&format!("/ws/alpha?apikey={key}&instances=beta")).await;
        let refusal = one.json(WAIT).await;
        assert_eq!(refusal["data"]["code"], "BAD_REQUEST", "{refusal}");
        assert_eq!(one.closed(WAIT).await.0, 1008);
        everything.close().await;
        some.close().await;
        app.stop().await;
    }
}
