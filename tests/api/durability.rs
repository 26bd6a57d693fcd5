//! Durability and ordering: what was committed survives a restart, the log
//! reads back by cursor, and concurrent writers never break invariant 2.

use std::collections::HashMap;
use std::time::Duration;

use reqwest::Method;
use serde_json::{json, Value};

use crate::helpers::*;
use crate::on_both_backends;

fn ids(events: &[Value]) -> Vec<i64> {
    events
        .iter()
        .map(|e| e["id"].as_i64().expect("id"))
        .collect()
}

/// Checks invariant 2 on a full read of the log: ids strictly increase and
/// each instance's seqs are exactly 1..=n.
fn assert_ordered_and_gap_free(log: &[Value]) {
    let ids = ids(log);
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "ids strictly increase");
    let mut seqs: HashMap<String, Vec<i64>> = HashMap::new();
    for event in log {
        seqs.entry(event["instance"].as_str().expect("instance").to_owned())
            .or_default()
            .push(event["seq"].as_i64().expect("seq"));
    }
    for (instance, seqs) in seqs {
        assert_eq!(
            seqs,
            (1..=seqs.len() as i64).collect::<Vec<_>>(),
            "seqs of {instance}"
        );
    }
}

on_both_backends! {
    async fn events_and_instances_survive_a_restart_and_read_back_by_cursor(backend: Backend) {
        let db = TestDb::new(backend).await;
        let app = TestApp::spawn(&db).await;
        let alpha_key = app.create_instance("alpha", quick_simulator()).await;
        app.create_instance("beta", quick_simulator()).await;
        let logged_out = app.admin(Method::DELETE, "/instance/logout/beta").send().await.expect("send");
        assert_eq!(logged_out.status(), 200);
        let mut ws = app.ws(&format!("/ws/alpha?apikey={alpha_key}&events=incoming")).await;
        app.send_text("alpha", "+15550000001", "before restart").await;
        ws.events_until(WAIT, |e| !e.is_empty()).await;
        ws.close().await;
        let before = app.read_log("").await;
        assert!(!before.is_empty());
        app.stop().await;

        let app = TestApp::spawn(&db).await;
        // The instances are back, alpha running and beta still logged out,
        // and alpha's key (stored only as a hash) still works.
        let state: Value = app
            .with_key(Method::GET, "/instance/connectionState/alpha", &alpha_key)
            .send()
            .await
            .expect("send")
            .json()
            .await
            .expect("json");
        assert_eq!(state["instance"]["instanceName"], "alpha");
        wait_for("alpha's actor to be running again", WAIT, async || {
            let list: Value = app.get_json("/instance/fetchInstances").await;
            let status = |name: &str| {
                list.as_array()
                    .expect("list")
                    .iter()
                    .find(|i| i["instance"]["instanceName"] == name)
                    .map(|i| i["instance"]["status"].as_str().unwrap_or("").to_owned())
            };
            assert_eq!(status("beta").as_deref(), Some("close"));
            if status("alpha").as_deref() == Some("open") {
                Ok(())
            } else {
                Err(list)
            }
        })
        .await;

        // Everything committed before is there, unchanged, in order.
        let after = app.read_log("").await;
        assert_eq!(&after[..before.len()], &before[..]);
        // Reading from a cursor returns exactly what follows it.
        let middle = before[before.len() / 2]["id"].as_i64().expect("id");
        let page: Value = app
            .admin(Method::GET, &format!("/events?since={middle}&limit=1000"))
            .send()
            .await
            .expect("send")
            .json()
            .await
            .expect("json");
        let expected: Vec<i64> = ids(&after).into_iter().filter(|id| *id > middle).collect();
        // The restarted actor may append between the two reads: compare up to
        // what the first read saw.
        let last_seen = *expected.last().expect("events after the cursor");
        let paged: Vec<i64> = ids(page["events"].as_array().expect("events"))
            .into_iter()
            .filter(|id| *id <= last_seen)
            .collect();
        assert_eq!(paged, expected);

        // New events continue the cursors.
        app.send_text("alpha", "+15550000001", "after restart").await;
        let more = wait_for("the echo to arrive", WAIT, async || {
            let log = app.read_log("").await;
            log.iter()
                .any(|e| e["data"]["content"] == "Echo: after restart")
                .then_some(log)
        })
        .await;
        assert_ordered_and_gap_free(&more);
        app.stop().await;
    }

    async fn concurrent_instances_never_break_ordering_or_seq_gaps(backend: Backend) {
        let db = TestDb::new(backend).await;
        let mut settings = test_settings(&db);
        settings.limits.connection_queue_bytes = 64 << 20;
        let app = TestApp::spawn_with(settings).await;
        let names = ["w1", "w2", "w3", "w4"];
        for (i, name) in names.iter().enumerate() {
            app.create_instance(name, json!({ "kind": "simulator", "rate": 1500.0, "seed": i })).await;
        }
        let mut ws = app.ws(&format!("/ws?apikey={}", app.admin_key)).await;
        // Meanwhile the API appends too, from several tasks at once.
        let mut senders = Vec::new();
        for name in names {
            let http = app.http.clone();
            let url = app.url(&format!("/message/sendText/{name}"));
            let key = app.admin_key.clone();
            senders.push(tokio::spawn(async move {
                for n in 0..10 {
                    let response = http
                        .post(&url)
                        .header("apikey", &key)
                        .json(&json!({ "number": "+15550001234", "text": format!("m{n}") }))
                        .send()
                        .await
                        .expect("send");
                    assert_eq!(response.status(), 201);
                }
            }));
        }
        for sender in senders {
            sender.await.expect("sender");
        }
        // The simulators run on until the log holds enough traffic.
        wait_for("more than 1000 events committed", Duration::from_secs(60), async || {
            let committed = metric(&app, "switchboard_events_committed_total").await;
            if committed > 1000 {
                Ok(())
            } else {
                Err(format!("{committed} committed"))
            }
        })
        .await;
        for name in names {
            let response = app
                .admin(Method::DELETE, &format!("/instance/logout/{name}"))
                .send()
                .await
                .expect("send");
            assert_eq!(response.status(), 200);
        }
        let log = app.read_log("").await;
        assert!(log.len() > 1000, "enough traffic to mean something: {}", log.len());
        assert_ordered_and_gap_free(&log);

        // From its first event on, the live stream carried exactly the
        // log's events in the log's order: no gap, no duplicate. (The
        // simulators started before the client connected.)
        let last = log.last().expect("events")["id"].as_i64().expect("id");
        let live = ws
            .events_until(Duration::from_secs(60), |e| {
                e.last().is_some_and(|e| e["id"].as_i64() == Some(last))
            })
            .await;
        let first = live[0]["id"].as_i64().expect("id");
        let expected: Vec<i64> = ids(&log).into_iter().filter(|id| *id >= first).collect();
        assert!(expected.len() > 1000, "the client saw most of the traffic");
        assert_eq!(ids(&live), expected);
        ws.close().await;
        app.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn while_postgres_is_unreachable_writes_fail_fast_with_503_and_recover_by_themselves() {
    let db = TestDb::behind_proxy().await;
    let app = TestApp::spawn(&db).await;
    app.create_instance("alpha", json!({ "kind": "simulator", "echo": false }))
        .await;
    app.send_text("alpha", "+15550000001", "before").await;

    db.proxy().cut();
    let started = std::time::Instant::now();
    let response = app
        .admin(Method::POST, "/message/sendText/alpha")
        .json(&json!({ "number": "+15550000001", "text": "during" }))
        .send()
        .await
        .expect("send");
    assert_eq!(response.status(), 503);
    let body: Value = response.json().await.expect("json");
    assert_eq!(body["error"]["code"], "SERVICE_UNAVAILABLE");
    // Fast: the pool gives up on a connection after a few seconds.
    assert!(started.elapsed() < Duration::from_secs(15));
    let ready = app.http.get(app.url("/ready")).send().await.expect("send");
    assert_eq!(ready.status(), 503);

    db.proxy().restore();
    wait_for(
        "the server to recover without a restart and accept a text",
        Duration::from_secs(60),
        async || {
            let response = app
                .admin(Method::POST, "/message/sendText/alpha")
                .json(&json!({ "number": "+15550000001", "text": "after" }))
                .send()
                .await
                .expect("send");
            match response.status().as_u16() {
                201 => Ok(()),
                status => Err(format!("sendText answers {status}")),
            }
        },
    )
    .await;
    let contents: Vec<String> = app
        .read_log("&events=outgoing")
        .await
        .iter()
        .map(|e| e["data"]["content"].as_str().unwrap_or("").to_owned())
        .collect();
    assert_eq!(
        contents,
        ["before", "after"],
        "nothing half-written from the outage"
    );
    app.stop().await;
}
