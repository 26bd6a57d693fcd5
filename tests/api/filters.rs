//! Filters: each client gets exactly what it asked for, and can change it.

use serde_json::json;
use std::time::Duration;

use crate::helpers::*;
use crate::on_both_backends;
use crate::whole_loop::summary;

fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
    list.iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect()
}

on_both_backends! {
    async fn two_clients_get_exactly_their_filters_and_can_change_them(backend: Backend) {
        let db = TestDb::new(backend).await;
        let app = TestApp::spawn(&db).await;
        app.create_instance("alpha", quick_simulator()).await;
        app.create_instance("beta", quick_simulator()).await;
        let key = app.admin_key.clone();
        // Seed 000's alias on every instance, and Evolution's alias on one.
        let mut incoming = app.ws(&format!("/ws?apikey={key}&events=incoming")).await;
        let mut alpha_deliveries = app
            .ws(&format!("/ws/alpha?apikey={key}&events=MESSAGES_UPDATE"))
            .await;

        app.send_text("alpha", "+15550000001", "one").await;
        app.send_text("beta", "+15550000002", "two").await;

        let got = incoming.events_until(WAIT, |e| e.len() == 2).await;
        assert_eq!(summary(&got), pairs(&[("message", "incoming"), ("message", "incoming")]));
        let mut instances: Vec<&str> = got.iter().map(|e| e["instance"].as_str().unwrap_or("")).collect();
        instances.sort();
        assert_eq!(instances, ["alpha", "beta"]);

        let got = alpha_deliveries.events_until(WAIT, |e| e.len() == 3).await;
        assert_eq!(
            summary(&got),
            pairs(&[("delivery", "queued"), ("delivery", "sent"), ("delivery", "delivered")])
        );
        assert!(got.iter().all(|e| e["instance"] == "alpha"));
        incoming.assert_silent(Duration::from_millis(300)).await;
        alpha_deliveries.assert_silent(Duration::from_millis(300)).await;

        // Change both filters at run time; each change is acknowledged.
        incoming.send_json(json!({ "action": "unsubscribe", "instances": ["beta"] })).await;
        let ack = incoming.control(WAIT).await;
        assert_eq!(ack["type"], "unsubscribed", "{ack}");
        assert_eq!(ack["data"]["instances"]["all_except"], json!(["beta"]));
        alpha_deliveries
            .send_json(json!({ "action": "subscribe", "events": ["message"] }))
            .await;
        let ack = alpha_deliveries.control(WAIT).await;
        assert_eq!(ack["type"], "subscribed", "{ack}");
        assert_eq!(ack["data"]["events"], json!(["message", "delivery"]));
        assert_eq!(ack["data"]["instances"], json!(["alpha"]));

        app.send_text("beta", "+15550000003", "three").await;
        app.send_text("alpha", "+15550000004", "four").await;

        let got = incoming.events_until(WAIT, |e| e.len() == 1).await;
        assert_eq!(got[0]["instance"], "alpha");
        assert_eq!(got[0]["data"]["content"], "Echo: four");
        let got = alpha_deliveries.events_until(WAIT, |e| e.len() == 5).await;
        assert_eq!(
            summary(&got),
            pairs(&[
                ("message", "outgoing"),
                ("delivery", "queued"),
                ("delivery", "sent"),
                ("delivery", "delivered"),
                ("message", "incoming"),
            ])
        );
        incoming.assert_silent(Duration::from_millis(300)).await;
        alpha_deliveries.assert_silent(Duration::from_millis(300)).await;

        // Unsubscribing from an event removes it.
        alpha_deliveries
            .send_json(json!({ "action": "unsubscribe", "events": ["delivery"] }))
            .await;
        let ack = alpha_deliveries.control(WAIT).await;
        assert_eq!(ack["data"]["events"], json!(["message"]));

        // Heartbeats in JSON, as seed 003 sends them.
        incoming.send_json(json!({ "type": "ping", "data": {} })).await;
        let pong = incoming.control(WAIT).await;
        assert_eq!(pong["type"], "pong");
        assert!(pong["timestamp"].is_string());

        incoming.close().await;
        alpha_deliveries.close().await;
        app.stop().await;
    }

    async fn per_instance_websocket_defaults_apply_to_clients_that_did_not_choose(backend: Backend) {
        let db = TestDb::new(backend).await;
        let app = TestApp::spawn(&db).await;
        app.create_instance("alpha", quick_simulator()).await;
        let set = app
            .admin(reqwest::Method::POST, "/websocket/set/alpha")
            .json(&json!({ "websocket": { "enabled": true, "events": ["SEND_MESSAGE"] } }))
            .send()
            .await
            .expect("set");
        assert_eq!(set.status(), 200);
        let found: serde_json::Value = app
            .admin(reqwest::Method::GET, "/websocket/find/alpha")
            .send()
            .await
            .expect("find")
            .json()
            .await
            .expect("json");
        assert_eq!(found["websocket"]["events"], json!(["outgoing"]));

        let mut defaults = app.ws(&format!("/ws/alpha?apikey={}", app.admin_key)).await;
        app.send_text("alpha", "+15550000001", "x").await;
        let got = defaults.events_until(WAIT, |e| !e.is_empty()).await;
        assert_eq!(summary(&got), pairs(&[("message", "outgoing")]));
        defaults.assert_silent(Duration::from_millis(500)).await;
        defaults.close().await;
        app.stop().await;
    }
}
