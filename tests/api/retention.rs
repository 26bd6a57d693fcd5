//! Retention: old events go, and a cursor into what went is refused
//! explicitly instead of silently skipping.

use std::time::Duration;

use reqwest::Method;
use serde_json::{json, Value};
use switchboard::{
    domain::InstanceName,
    event::data::{Direction, MessageData, Payload},
    store::Job,
};

use crate::helpers::*;
use crate::on_both_backends;

on_both_backends! {
    async fn retention_deletes_by_count_and_age_and_expired_cursors_are_refused(backend: Backend) {
        let db = TestDb::new(backend).await;
        let mut settings = test_settings(&db);
        settings.retention.interval_secs = 1;
        let app = TestApp::spawn_with(settings).await;
        let driver = json!({ "kind": "simulator" });
        let created = app
            .admin(Method::POST, "/instance/create")
            .json(&json!({ "instanceName": "alpha", "driver": driver, "retention": { "maxEvents": 100 } }))
            .send()
            .await
            .expect("send");
        assert_eq!(created.status(), 201);
        app.create_instance("beta", json!({ "kind": "simulator" })).await;
        let set = app
            .admin(Method::POST, "/retention/set/beta")
            .json(&json!({ "maxAgeSecs": 60 }))
            .send()
            .await
            .expect("send");
        assert_eq!(set.status(), 200);
        let found: Value = app.get_json("/retention/find/beta").await;
        assert_eq!(found["retention"]["maxAgeSecs"], 60);
        let bad = app
            .admin(Method::POST, "/retention/set/beta")
            .json(&json!({ "maxAgeDays": 1 }))
            .send()
            .await
            .expect("send");
        assert_eq!(bad.status(), 400);

        append_messages(&app.log, "alpha", 300, 100, 10).await;
        // Beta's events claim to be an hour old: beyond its 60 s.
        let beta = InstanceName::parse("beta").expect("valid");
        let mut old = MessageData {
            id: "old".into(),
            direction: Direction::Incoming,
            from: "+15550000001".into(),
            to: "+15550000002".into(),
            kind: "text".into(),
            content: "stale".into(),
            timestamp: 0,
            parts: 1,
        }
        .into_event(&beta);
        old.timestamp -= chrono::Duration::hours(1);
        app.log.append(Job { events: vec![old], changes: Vec::new(), fence: None }).await.expect("append");

        wait_for("retention to run", Duration::from_secs(30), async || {
            let alpha = app.read_log("&instance=alpha&events=message").await;
            let beta = app.read_log("&instance=beta&events=message").await;
            if alpha.len() <= 100 && beta.is_empty() {
                Ok(())
            } else {
                Err(format!("alpha has {} messages, beta {}", alpha.len(), beta.len()))
            }
        })
        .await;
        let alpha = app.read_log("&instance=alpha").await;
        let oldest = alpha.first().expect("kept events")["id"].as_i64().expect("id");
        let seqs: Vec<i64> = alpha.iter().map(|e| e["seq"].as_i64().expect("seq")).collect();
        assert!(seqs.windows(2).all(|w| w[1] == w[0] + 1), "what is kept is contiguous");

        // A cursor below what was deleted is refused on every path...
        let expired = app.admin(Method::GET, "/events?since=5&instance=alpha").send().await.expect("send");
        assert_eq!(expired.status(), 410);
        let body: Value = expired.json().await.expect("json");
        assert_eq!(body["error"]["code"], "CURSOR_EXPIRED");
        let mut ws = app.ws(&format!("/ws/alpha?apikey={}&since=5", app.admin_key)).await;
        assert_eq!(ws.json(WAIT).await["data"]["code"], "CURSOR_EXPIRED");
        assert_eq!(ws.closed(WAIT).await.0, 4011);
        let sse = app
            .http
            .get(app.url(&format!("/events/stream?apikey={}&instances=alpha", app.admin_key)))
            .header("Last-Event-ID", "5")
            .send()
            .await
            .expect("send");
        assert_eq!(sse.status(), 410);

        // ...while the oldest kept cursor, and 0, still work.
        let mut ws = app.ws(&format!("/ws/alpha?apikey={}&since={}", app.admin_key, oldest - 1)).await;
        assert_eq!(ws.event(WAIT).await["id"].as_i64(), Some(oldest));
        let mut ws = app.ws(&format!("/ws/alpha?apikey={}&since=0", app.admin_key)).await;
        assert_eq!(ws.event(WAIT).await["id"].as_i64(), Some(oldest));

        // Seqs carry on after the deleted ones.
        let last_seq = *seqs.last().expect("seq");
        append_messages(&app.log, "alpha", 1, 1, 10).await;
        let newest = app.read_log("&instance=alpha").await;
        assert_eq!(newest.last().expect("event")["seq"].as_i64(), Some(last_seq + 1));
        app.stop().await;
    }
}
