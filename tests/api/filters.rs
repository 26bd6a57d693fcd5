//! Filters: each client gets exactly what it asked for, and can change it.

use serde_json::json;
use switchboard::event::data::Direction;

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

        let one = app.send_text("alpha", "+15550000001", "one").await;
        let two = app.send_text("beta", "+15550000002", "two").await;

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
        // Nothing else: once both stories are in the log, each client's next
        // event is a marker of its kind appended after them.
        wait_delivered_and_echoed(&app, &[(&one, "one"), (&two, "two")]).await;
        let message = append_marker(&app.log, "alpha", marker_message(Direction::Incoming, "marker-1")).await;
        let delivery = append_marker(&app.log, "alpha", marker_delivery("marker-2")).await;
        incoming.assert_next_is_marker(message).await;
        alpha_deliveries.assert_next_is_marker(delivery).await;

        // Change both filters at run time; each change is acknowledged.
        incoming.send_json(json!({ "action": "unsubscribe", "instances": ["beta"] })).await;
        let ack = incoming.control(WAIT).await;
        assert_eq!(ack["type"], "unsubscribed", "{ack}");
        assert_eq!(
            ack["data"]["instances"],
            json!({ "scope": "all_except", "count": 1, "changed": 1 })
        );
        alpha_deliveries
            .send_json(json!({ "action": "subscribe", "events": ["message"] }))
            .await;
        let ack = alpha_deliveries.control(WAIT).await;
        assert_eq!(ack["type"], "subscribed", "{ack}");
        assert_eq!(ack["data"]["events"], json!(["message", "delivery"]));
        assert_eq!(
            ack["data"]["instances"],
            json!({ "scope": "only", "count": 1, "changed": 0 })
        );

        let three = app.send_text("beta", "+15550000003", "three").await;
        let four = app.send_text("alpha", "+15550000004", "four").await;

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
        // Nothing else: an incoming message on alpha is for both of them now.
        wait_delivered_and_echoed(&app, &[(&three, "three"), (&four, "four")]).await;
        let marker = append_marker(&app.log, "alpha", marker_message(Direction::Incoming, "marker-3")).await;
        incoming.assert_next_is_marker(marker).await;
        alpha_deliveries.assert_next_is_marker(marker).await;

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
        let x = app.send_text("alpha", "+15550000001", "x").await;
        let got = defaults.events_until(WAIT, |e| !e.is_empty()).await;
        assert_eq!(summary(&got), pairs(&[("message", "outgoing")]));
        // Nothing else of the text's story: the next event is an outgoing
        // marker appended after it.
        wait_delivered_and_echoed(&app, &[(&x, "x")]).await;
        let marker = append_marker(&app.log, "alpha", marker_message(Direction::Outgoing, "marker")).await;
        defaults.assert_next_is_marker(marker).await;
        defaults.close().await;
        app.stop().await;
    }
}
