//! Message history: `GET /message/find/{instance}` and
//! `GET /message/{instance}/{id}` agree with the events, filter and page,
//! bound the work of one request, and show an instance key only its own.

use reqwest::Method;
use serde_json::{json, Value};
use switchboard::tools::modem_sim::SimSettings;

use crate::helpers::*;
use crate::modem::{pty_modem, serial_driver, wait_log};
use crate::on_both_backends;

async fn get(app: &TestApp, path: &str) -> (u16, Value) {
    let response = app.admin(Method::GET, path).send().await.expect("request");
    let status = response.status().as_u16();
    (status, response.json().await.expect("a JSON body"))
}

async fn find(app: &TestApp, query: &str) -> Value {
    let (status, body) = get(app, &format!("/message/find/alpha{query}")).await;
    assert_eq!(status, 200, "{query}: {body}");
    body
}

fn ids(page: &Value) -> Vec<String> {
    page["messages"]
        .as_array()
        .expect("messages")
        .iter()
        .map(|m| m["id"].as_str().expect("id").to_owned())
        .collect()
}

on_both_backends! {
    async fn history_agrees_with_the_events_filters_and_pages(backend: Backend) {
        let db = TestDb::new(backend).await;
        let app = TestApp::spawn(&db).await;
        app.create_instance("alpha", quick_simulator()).await;
        let first = app.send_text("alpha", "+15550000001", "one").await;
        let second = app.send_text("alpha", "+15550000002", "two").await;
        let third = app.send_text("alpha", "+15550000001", "three").await;
        wait_delivered_and_echoed(&app, &[(&first, "one"), (&second, "two"), (&third, "three")]).await;

        // Every message event of the log is in the history, newest first,
        // with the outgoing ones' latest delivery status.
        let log = app.read_log("&instance=alpha&events=message,delivery").await;
        let mut expected: Vec<(String, String, String)> = log
            .iter()
            .filter(|e| e["event"] == "message")
            .map(|e| {
                let d = &e["data"];
                let status = if d["direction"] == "incoming" {
                    "received".to_owned()
                } else {
                    log.iter()
                        .rev()
                        .find(|x| x["event"] == "delivery" && x["data"]["id"] == d["id"])
                        .map(|x| x["data"]["status"].as_str().expect("present").to_owned())
                        .unwrap_or_default()
                };
                (d["id"].as_str().expect("present").to_owned(), d["direction"].as_str().expect("present").to_owned(), status)
            })
            .collect();
        expected.reverse();
        assert_eq!(expected.len(), 6, "three sent, three echoes: {log:#?}");
        let all = find(&app, "").await;
        let got: Vec<(String, String, String)> = all["messages"]
            .as_array()
            .expect("present")
            .iter()
            .map(|m| (
                m["id"].as_str().expect("present").to_owned(),
                m["direction"].as_str().expect("present").to_owned(),
                m["status"].as_str().expect("present").to_owned(),
            ))
            .collect();
        assert_eq!(got, expected);
        assert_eq!(all["nextCursor"], Value::Null);
        let three = all["messages"].as_array().expect("present").iter().find(|m| m["id"] == third.as_str()).expect("listed");
        assert_eq!((three["text"].as_str(), three["number"].as_str(), three["to"].as_str()), (Some("three"), Some("+15550000001"), Some("+15550000001")), "{all:#}");
        let echo = all["messages"].as_array().expect("present").iter().find(|m| m["text"] == "Echo: three").expect("listed");
        assert_eq!((echo["direction"].as_str(), echo["number"].as_str(), echo["from"].as_str()), (Some("incoming"), Some("+15550000001"), Some("+15550000001")), "{all:#}");

        // Filters: direction, number, status.
        assert_eq!(ids(&find(&app, "?direction=outgoing").await), [third.clone(), second.clone(), first.clone()]);
        assert_eq!(ids(&find(&app, "?direction=outgoing&number=%2B15550000001").await), [third.clone(), first.clone()]);
        assert_eq!(find(&app, "?direction=incoming&status=received").await["messages"].as_array().expect("present").len(), 3);
        assert_eq!(ids(&find(&app, "?status=delivered").await), [third.clone(), second.clone(), first.clone()]);
        assert!(ids(&find(&app, "?status=queued").await).is_empty());
        assert!(ids(&find(&app, "?until=2000-01-01T00:00:00Z").await).is_empty());
        assert_eq!(ids(&find(&app, "?since=2000-01-01T00:00:00Z").await).len(), 6);

        // Pages of two, each picking up where the last one ended.
        let mut pages = Vec::new();
        let mut query = "?direction=outgoing&limit=2".to_owned();
        loop {
            let page = find(&app, &query).await;
            pages.extend(ids(&page));
            match page["nextCursor"].as_i64() {
                Some(cursor) => query = format!("?direction=outgoing&limit=2&cursor={cursor}"),
                None => break,
            }
        }
        assert_eq!(pages, [third.clone(), second.clone(), first.clone()]);

        // One message with its status (its parts: see the AT test below).
        let (status, one) = get(&app, &format!("/message/alpha/{first}")).await;
        assert_eq!(status, 200, "{one}");
        assert_eq!((one["status"].as_str(), one["text"].as_str(), one["number"].as_str()), (Some("delivered"), Some("one"), Some("+15550000001")));

        // Mistakes are 400s naming what to fix; unknown things are 404s.
        for (query, says) in [
            ("?direction=sideways", "'direction'"),
            ("?status=lost", "'status' must be one of"),
            ("?limit=0", "'limit'"),
            ("?limit=501", "'limit'"),
            ("?since=yesterday", "'since' must be an RFC 3339 time"),
            ("?since=2026-01-02T00:00:00Z&until=2026-01-01T00:00:00Z", "before 'until'"),
            ("?cursor=0", "'cursor'"),
            ("?page=2", "page"),
        ] {
            let (status, body) = get(&app, &format!("/message/find/alpha{query}")).await;
            assert_eq!(status, 400, "{query}: {body}");
            assert!(body["error"]["message"].as_str().unwrap_or_default().contains(says), "{query}: {body}");
        }
        assert_eq!(get(&app, "/message/find/ghost").await.0, 404);
        assert_eq!(get(&app, "/message/alpha/no-such-message").await.0, 404);
        // An incoming message has no outbox row: listed, not shown alone.
        let echo = find(&app, "?direction=incoming&limit=1").await["messages"][0]["id"].as_str().expect("present").to_owned();
        assert_eq!(get(&app, &format!("/message/alpha/{echo}")).await.0, 404);

        // An instance key reads its own instance only.
        let beta_key = app.create_instance("beta", quick_simulator()).await;
        let mine = app.with_key(Method::GET, "/message/find/beta", &beta_key).send().await.expect("present");
        assert_eq!(mine.status(), 200);
        let theirs = app.with_key(Method::GET, "/message/find/alpha", &beta_key).send().await.expect("present");
        assert_eq!(theirs.status(), 403);
        let theirs = app.with_key(Method::GET, &format!("/message/alpha/{first}"), &beta_key).send().await.expect("present");
        assert_eq!(theirs.status(), 403);
        let (status, _) = get(&app, &format!("/message/beta/{first}")).await;
        assert_eq!(status, 404, "another instance's message is not found through this one");
        app.stop().await;
    }
}

on_both_backends! {
    async fn one_request_scans_a_bounded_part_of_the_log_and_says_where_to_go_on(backend: Backend) {
        let db = TestDb::new(backend).await;
        let app = TestApp::spawn(&db).await;
        app.create_instance("alpha", quick_simulator()).await;
        let needle = app.send_text("alpha", "+15550000007", "needle").await;
        wait_delivered_and_echoed(&app, &[(&needle, "needle")]).await;
        // Newer than the needle and its echo: more messages than one
        // request may read (5,000), none of them with that number.
        append_messages(&app.log, "alpha", 12_000, 1_000, 8).await;

        let mut query = "?number=%2B15550000007&limit=2".to_owned();
        let mut requests = 0;
        let page = loop {
            requests += 1;
            assert!(requests <= 3, "the scan makes progress");
            let page = find(&app, &query).await;
            if !ids(&page).is_empty() {
                break page;
            }
            // A request that read its 5,000 events without filling the
            // page answers what it found (nothing) and where to go on.
            let cursor = page["nextCursor"].as_i64().expect("a short page says where to go on");
            query = format!("?number=%2B15550000007&limit=2&cursor={cursor}");
        };
        assert_eq!(requests, 3, "12,000 events to pass, 5,000 per request");
        let found = page["messages"].as_array().expect("present");
        assert_eq!(found.len(), 2, "{page:#}");
        assert_eq!((found[0]["direction"].as_str(), found[0]["text"].as_str()), (Some("incoming"), Some("Echo: needle")));
        assert_eq!(found[1]["id"], needle.as_str());
        app.stop().await;
    }
}

/// Over the AT path: a two-part text, each part with the reference the
/// modem gave it and the status its report brought.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sent_message_shows_each_part_with_its_reference_and_report() {
    let db = TestDb::new(Backend::Postgres).await;
    let sim = pty_modem(&db.dir, SimSettings::default()).await;
    let app = TestApp::spawn(&db).await;
    app.create_instance("usb", serial_driver(&sim)).await;
    let response = app
        .admin(Method::POST, "/message/sendText/usb")
        .json(&json!({"number": "+15557654321", "text": "b".repeat(200)}))
        .send()
        .await
        .expect("send");
    assert_eq!(response.status(), 201);
    let sent: Value = response.json().await.expect("json");
    let id = sent["key"]["id"]
        .as_str()
        .or(sent["id"].as_str())
        .expect("an id")
        .to_owned();
    let log = wait_log(
        &app,
        "&instance=usb&events=delivery",
        "both parts to be delivered",
        |log| {
            log.iter()
                .any(|e| e["data"]["id"] == id.as_str() && e["data"]["status"] == "delivered")
        },
    )
    .await;
    assert!(log
        .iter()
        .any(|e| e["data"]["id"] == id.as_str() && e["data"]["status"] == "sent"));

    let (status, one) = get(&app, &format!("/message/usb/{id}")).await;
    assert_eq!(status, 200, "{one}");
    assert_eq!(one["status"], "delivered", "{one:#}");
    let parts = one["parts"].as_array().expect("parts");
    assert_eq!(parts.len(), 2, "{one:#}");
    for (i, part) in parts.iter().enumerate() {
        assert_eq!(
            (
                part["part"].as_u64(),
                part["total"].as_u64(),
                part["status"].as_str()
            ),
            (Some(i as u64 + 1), Some(2), Some("delivered")),
            "{one:#}"
        );
    }
    assert_ne!(
        parts[0]["reference"], parts[1]["reference"],
        "each part has its own reference: {one:#}"
    );
    assert!(one["waiting"].is_null(), "{one:#}");
    let listed = get(&app, "/message/find/usb?direction=outgoing").await.1;
    assert_eq!(listed["messages"][0]["id"], id.as_str());
    assert_eq!(listed["messages"][0]["status"], "delivered");
    assert_eq!(listed["messages"][0]["parts"], 2);
    app.stop().await;
}
