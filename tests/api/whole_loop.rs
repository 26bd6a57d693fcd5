//! The whole loop: REST in, modem actor, log, WebSocket out.

use crate::helpers::*;
use crate::on_both_backends;

/// `(event, direction or status)` of each event, to compare sequences.
pub fn summary(events: &[serde_json::Value]) -> Vec<(String, String)> {
    events
        .iter()
        .map(|e| {
            let detail = e["data"]["direction"]
                .as_str()
                .or(e["data"]["status"].as_str())
                .unwrap_or("");
            (
                e["event"].as_str().unwrap_or("").to_owned(),
                detail.to_owned(),
            )
        })
        .collect()
}

on_both_backends! {
    async fn a_sent_text_comes_back_as_ordered_events_with_gap_free_seqs(backend: Backend) {
        let db = TestDb::new(backend).await;
        let app = TestApp::spawn(&db).await;
        app.create_instance("alpha", quick_simulator()).await;
        let mut ws = app
            .ws(&format!("/ws?apikey={}&events=message,delivery", app.admin_key))
            .await;

        let id = app.send_text("alpha", "+15551230001", "Hello there").await;
        let events = ws
            .events_until(WAIT, |evs| {
                evs.iter().any(|e| e["event"] == "message" && e["data"]["direction"] == "incoming")
            })
            .await;

        let expected: Vec<(String, String)> = [
            ("message", "outgoing"),
            ("delivery", "queued"),
            ("delivery", "sent"),
            ("delivery", "delivered"),
            ("message", "incoming"),
        ]
        .iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect();
        assert_eq!(summary(&events), expected);
        for event in &events {
            assert_eq!(event["instance"], "alpha");
        }
        for event in &events[..4] {
            assert_eq!(event["data"]["id"], id.as_str(), "{event}");
        }
        assert_eq!(events[0]["data"]["content"], "Hello there");
        assert_eq!(events[0]["data"]["to"], "+15551230001");
        let reply = &events[4]["data"];
        assert_eq!(reply["from"], "+15551230001");
        assert_eq!(reply["content"], "Echo: Hello there");
        assert_eq!(reply["to"], events[0]["data"]["from"]);

        let ids: Vec<i64> = events.iter().map(|e| e["id"].as_i64().expect("id")).collect();
        let seqs: Vec<i64> = events.iter().map(|e| e["seq"].as_i64().expect("seq")).collect();
        assert!(ids.windows(2).all(|w| w[0] < w[1]), "ids increase: {ids:?}");
        assert!(seqs.windows(2).all(|w| w[0] < w[1]), "seqs increase: {seqs:?}");

        // In the log the instance's seqs are exactly 1..=n (the connection
        // events the filter left out fill the holes), and each event the
        // client got is there with the same id and seq.
        let log = app.read_log("&instance=alpha").await;
        let log_seqs: Vec<i64> = log.iter().map(|e| e["seq"].as_i64().expect("seq")).collect();
        assert_eq!(log_seqs, (1..=log.len() as i64).collect::<Vec<_>>());
        for event in &events {
            assert!(log.contains(event), "{event} is in the log as sent");
        }

        ws.close().await;
        app.stop().await;
    }
}
