//! Sending like a gateway: priority orders a queue, `sendAt` schedules,
//! `ttlSecs` / `validUntil` expire a text unsent, and a text no part of
//! which went out can be cancelled (on the virtual modem and over
//! modem-sim's AT path).

use std::time::Duration;

use chrono::{DateTime, Utc};
use reqwest::Method;
use serde_json::{json, Value};
use switchboard::tools::modem_sim::{Action, SimSettings};

use crate::helpers::*;
use crate::modem::{pty_modem, serial_driver, wait_log};
use crate::on_both_backends;

const LONG: Duration = Duration::from_secs(30);

/// `POST /message/sendText/{instance}` with `body`.
async fn send(app: &TestApp, instance: &str, body: Value) -> (u16, Value) {
    let response = app
        .admin(Method::POST, &format!("/message/sendText/{instance}"))
        .json(&body)
        .send()
        .await
        .expect("send");
    let status = response.status().as_u16();
    (status, response.json().await.expect("a JSON body"))
}

async fn send_ok(app: &TestApp, instance: &str, body: Value) -> Value {
    let (status, body) = send(app, instance, body).await;
    assert_eq!(status, 201, "{body}");
    body
}

async fn cancel(app: &TestApp, instance: &str, id: &str) -> (u16, Value) {
    let response = app
        .admin(Method::DELETE, &format!("/message/{instance}/{id}"))
        .send()
        .await
        .expect("send");
    let status = response.status().as_u16();
    (status, response.json().await.expect("a JSON body"))
}

/// Stops the instance's driver, so texts wait in its outbox.
async fn logout(app: &TestApp, instance: &str) {
    let response = app
        .admin(Method::DELETE, &format!("/instance/logout/{instance}"))
        .send()
        .await
        .expect("send");
    assert_eq!(response.status(), 200);
}

async fn connect(app: &TestApp, instance: &str) {
    let response = app
        .admin(Method::GET, &format!("/instance/connect/{instance}"))
        .send()
        .await
        .expect("send");
    assert_eq!(response.status(), 200);
}

/// The ids of the messages with a `delivery` event of `status`, in log order.
fn with_status(log: &[Value], status: &str) -> Vec<String> {
    log.iter()
        .filter(|e| e["event"] == "delivery" && e["data"]["status"] == status)
        .filter_map(|e| e["data"]["id"].as_str().map(str::to_owned))
        .collect()
}

fn id(body: &Value) -> String {
    body["id"].as_str().expect("an id").to_owned()
}

fn time(value: &Value) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(value.as_str().expect("a time"))
        .expect("RFC 3339")
        .with_timezone(&Utc)
}

on_both_backends! {
    async fn priority_orders_the_queue_and_send_at_holds_a_text_until_its_time(backend: Backend) {
        let db = TestDb::new(backend).await;
        let app = TestApp::spawn(&db).await;
        app.create_instance("alpha", quick_simulator()).await;
        logout(&app, "alpha").await;

        let low = id(&send_ok(&app, "alpha", json!({"number": "+15550000001", "text": "low", "priority": 1})).await);
        let normal = id(&send_ok(&app, "alpha", json!({"number": "+15550000002", "text": "normal"})).await);
        let high = id(&send_ok(&app, "alpha", json!({"number": "+15550000003", "text": "high", "priority": 9})).await);
        let send_at = Utc::now() + chrono::Duration::seconds(2);
        let later = send_ok(&app, "alpha", json!({
            "number": "+15550000004", "text": "later", "priority": 9,
            "sendAt": send_at.to_rfc3339(),
        }))
        .await;
        assert_eq!(later["priority"], 9);
        assert!(time(&later["sendAt"]) >= send_at - chrono::Duration::milliseconds(1), "{later}");
        let later = id(&later);

        connect(&app, "alpha").await;
        let log = wait_log(&app, "&instance=alpha&events=delivery", "every text to be sent", |log| {
            with_status(log, "sent").len() == 4
        })
        .await;
        assert_eq!(with_status(&log, "sent"), [high, normal, low, later.clone()]);
        let sent_later = log
            .iter()
            .find(|e| e["data"]["id"] == later.as_str() && e["data"]["status"] == "sent")
            .expect("sent");
        assert!(time(&sent_later["timestamp"]) >= send_at, "{sent_later}");

        for (body, message) in [
            (json!({"number": "+15550000001", "text": "x", "priority": 10}), "'priority' is 10"),
            (json!({"number": "+15550000001", "text": "x", "sendAt": "soon"}), "'sendAt' must be an RFC 3339 time"),
            (json!({"number": "+15550000001", "text": "x", "ttlSecs": 5, "validUntil": "2030-01-01T00:00:00Z"}), "not both"),
            (json!({"number": "+15550000001", "text": "x", "validUntil": "2020-01-01T00:00:00Z"}), "already past"),
        ] {
            let (status, reply) = send(&app, "alpha", body.clone()).await;
            assert_eq!(status, 400, "{body}: {reply}");
            assert!(reply["error"]["message"].as_str().unwrap_or_default().contains(message), "{reply}");
        }
        app.stop().await;
    }
}

on_both_backends! {
    async fn a_text_whose_time_ran_out_is_never_sent_and_gets_expired(backend: Backend) {
        let db = TestDb::new(backend).await;
        let app = TestApp::spawn(&db).await;
        app.create_instance("alpha", quick_simulator()).await;
        logout(&app, "alpha").await;
        let stale = send_ok(&app, "alpha", json!({"number": "+15550000001", "text": "stale", "ttlSecs": 1})).await;
        let until = time(&stale["validUntil"]);
        let fresh = id(&send_ok(&app, "alpha", json!({"number": "+15550000002", "text": "fresh", "ttlSecs": 3600})).await);
        let stale = id(&stale);
        wait_for("the first text's time to run out", LONG, async || Utc::now() > until).await;

        connect(&app, "alpha").await;
        let log = wait_log(&app, "&instance=alpha&events=delivery", "one expired, one delivered", |log| {
            with_status(log, "expired") == [stale.clone()] && with_status(log, "delivered") == [fresh.clone()]
        })
        .await;
        assert!(!with_status(&log, "sent").contains(&stale), "{log:#?}");
        // A scheduled text that expires while the driver runs and waits
        // for its time: the driver wakes for it.
        let at = Utc::now() + chrono::Duration::seconds(1);
        let doomed = id(&send_ok(&app, "alpha", json!({
            "number": "+15550000003", "text": "never", "sendAt": at.to_rfc3339(),
            "validUntil": (at + chrono::Duration::milliseconds(1)).to_rfc3339(),
        }))
        .await);
        let (status, body) = cancel(&app, "alpha", &stale).await;
        assert_eq!((status, body["error"]["message"].as_str()), (409, Some(format!("message '{stale}' is already expired").as_str())));
        // It is sent or expired, never both, and the log says which.
        let log = wait_log(&app, "&instance=alpha&events=delivery", "the scheduled text to settle", |log| {
            with_status(log, "expired").contains(&doomed) || with_status(log, "sent").contains(&doomed)
        })
        .await;
        let settled = [with_status(&log, "expired").contains(&doomed), with_status(&log, "sent").contains(&doomed)];
        assert_ne!(settled[0], settled[1], "{log:#?}");
        app.stop().await;
    }
}

on_both_backends! {
    async fn a_waiting_text_is_cancelled_and_a_sent_one_is_not(backend: Backend) {
        let db = TestDb::new(backend).await;
        let app = TestApp::spawn(&db).await;
        app.create_instance("alpha", quick_simulator()).await;
        logout(&app, "alpha").await;
        let doomed = id(&send_ok(&app, "alpha", json!({"number": "+15550000001", "text": "never mind"})).await);
        let kept = id(&send_ok(&app, "alpha", json!({"number": "+15550000002", "text": "kept"})).await);

        let (status, body) = cancel(&app, "alpha", &doomed).await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body, json!({"id": doomed, "instance": "alpha", "number": "+15550000001", "status": "cancelled"}));
        let (status, body) = cancel(&app, "alpha", &doomed).await;
        assert_eq!(status, 409, "{body}");
        assert_eq!(body["error"]["message"], format!("message '{doomed}' is already cancelled"));
        assert_eq!(cancel(&app, "alpha", "no-such-message").await.0, 404);
        assert_eq!(cancel(&app, "ghost", &kept).await.0, 404);

        connect(&app, "alpha").await;
        let log = wait_log(&app, "&instance=alpha&events=delivery", "the kept text to be delivered", |log| {
            with_status(log, "delivered") == [kept.clone()]
        })
        .await;
        assert_eq!(with_status(&log, "cancelled"), std::slice::from_ref(&doomed));
        assert!(!with_status(&log, "sent").contains(&doomed));
        let (status, body) = cancel(&app, "alpha", &kept).await;
        assert_eq!(status, 409, "{body}");
        assert_eq!(body["error"]["message"], format!("message '{kept}' is already delivered"));

        // An instance key cancels only its own instance's texts.
        let other_key = app.create_instance("beta", quick_simulator()).await;
        let theirs = app
            .with_key(Method::DELETE, &format!("/message/alpha/{kept}"), &other_key)
            .send()
            .await
            .expect("send");
        assert_eq!(theirs.status(), 403);
        app.stop().await;
    }
}

/// The first part of a three-part text goes out over the AT path and the
/// second keeps failing: the text is being sent, so it can no longer be
/// cancelled; a text waiting behind it still can.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_text_whose_first_part_went_out_cannot_be_cancelled() {
    let db = TestDb::new(Backend::Postgres).await;
    let sim = pty_modem(&db.dir, SimSettings::default()).await;
    let app = TestApp::spawn(&db).await;
    let mut driver = serial_driver(&sim);
    driver["send_retry_ms"] = json!(60_000);
    app.create_instance("usb", driver).await;
    wait_log(
        &app,
        "&instance=usb&events=connection",
        "the modem to connect",
        |log| log.iter().any(|e| e["data"]["state"] == "connected"),
    )
    .await;
    // Part 1 is accepted; part 2 fails with a temporary error, and its
    // retry is a minute away.
    sim.act(Action::CmsError {
        code: 38,
        count: 1,
        skip: 1,
    })
    .await
    .expect("fault");
    let long = id(&send_ok(
        &app,
        "usb",
        json!({"number": "+15557654321", "text": "a".repeat(400)}),
    )
    .await);
    wait_log(
        &app,
        "&instance=usb&events=delivery",
        "the first part to go out",
        |log| {
            log.iter()
                .any(|e| e["data"]["id"] == long.as_str() && e["data"]["partsDone"] == 1)
        },
    )
    .await;
    let (status, body) = cancel(&app, "usb", &long).await;
    assert_eq!(status, 409, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("is being sent"),
        "{body}"
    );

    let waiting = id(&send_ok(
        &app,
        "usb",
        json!({
            "number": "+15557654321", "text": "later",
            "sendAt": (Utc::now() + chrono::Duration::hours(1)).to_rfc3339(),
        }),
    )
    .await);
    let (status, body) = cancel(&app, "usb", &waiting).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(sim.submitted().len(), 1, "only the first part went out");
    app.stop().await;
    sim.stop().await;
}

async fn set_settings(app: &TestApp, instance: &str, body: Value) {
    let response = app
        .admin(Method::POST, &format!("/settings/set/{instance}"))
        .json(&body)
        .send()
        .await
        .expect("send");
    let status = response.status();
    let body: Value = response.json().await.expect("json");
    assert_eq!(status, 200, "{body}");
}

on_both_backends! {
    async fn a_per_minute_throttle_lets_no_burst_through(backend: Backend) {
        let db = TestDb::new(backend).await;
        let mut settings = test_settings(&db);
        // A "minute" of one second, so the limit shows within seconds.
        settings.modem.throttle_minute_ms = 1000;
        let app = TestApp::spawn_with(settings).await;
        app.create_instance("alpha", quick_simulator()).await;
        set_settings(&app, "alpha", json!({"throttle": {"perMinute": 3}})).await;
        let found = app.get_json("/settings/find/alpha").await;
        assert_eq!(found["settings"]["throttle"], json!({"perMinute": 3}), "{found}");
        logout(&app, "alpha").await;
        for n in 0..12 {
            send_ok(&app, "alpha", json!({"number": format!("+1555000{n:04}"), "text": "burst"})).await;
        }
        connect(&app, "alpha").await;
        let log = wait_log(&app, "&instance=alpha&events=delivery", "every text to be sent", |log| {
            with_status(log, "sent").len() == 12
        })
        .await;
        let mut sent: Vec<DateTime<Utc>> = log
            .iter()
            .filter(|e| e["data"]["status"] == "sent")
            .map(|e| time(&e["timestamp"]))
            .collect();
        sent.sort();
        // No four sends within one window: each is claimed at least a
        // window after the one three before it (less the jitter between a
        // claim and its `sent` step).
        for four in sent.windows(4) {
            let span = four[3] - four[0];
            assert!(span >= chrono::Duration::milliseconds(900), "{span} between {:?}", four);
        }
        app.stop().await;
    }
}

on_both_backends! {
    async fn a_daily_quota_holds_until_the_next_utc_day_and_across_a_restart(backend: Backend) {
        use switchboard::domain::{InstanceName, Throttle, WindowKind};
        let db = TestDb::new(backend).await;
        let app = TestApp::spawn(&db).await;
        app.create_instance("alpha", quick_simulator()).await;
        logout(&app, "alpha").await;
        set_settings(&app, "alpha", json!({"throttle": {"perDay": 2}})).await;
        for n in 0..4 {
            send_ok(&app, "alpha", json!({"number": format!("+1555000{n:04}"), "text": "quota"})).await;
        }
        let name = InstanceName::parse("alpha").expect("valid");
        let quota = Throttle { per_day: Some(2), ..Throttle::default() };
        let minute = chrono::Duration::minutes(1);
        // The clock is given to the claim, so days pass at once.
        let evening = time(&json!("2030-06-01T23:59:00Z"));
        let morning = time(&json!("2030-06-02T00:00:01Z"));
        let claim = app.log.store().claim_next(&name, evening, 10, &quota.windows(evening, minute), minute).await.expect("claim");
        assert_eq!(claim.messages.len(), 2);
        let claim = app.log.store().claim_next(&name, evening, 10, &quota.windows(evening, minute), minute).await.expect("claim");
        assert!(claim.messages.is_empty());
        let held = claim.held.expect("held by the quota");
        assert_eq!((held.kind, held.limit, held.until), (WindowKind::Day, 2, time(&json!("2030-06-02T00:00:00Z"))));
        assert_eq!(held.to_string(), "throttle: perDay 2 reached until 2030-06-02T00:00:00Z");
        app.stop().await;

        // The count is in the database: a restart does not reset it.
        let app = TestApp::spawn(&db).await;
        let claim = app.log.store().claim_next(&name, evening, 10, &quota.windows(evening, minute), minute).await.expect("claim");
        assert!(claim.messages.is_empty() && claim.held.is_some(), "{claim:?}");
        let claim = app.log.store().claim_next(&name, morning, 10, &quota.windows(morning, minute), minute).await.expect("claim");
        assert_eq!(claim.messages.len(), 2, "{claim:?}");
        app.stop().await;
    }
}

on_both_backends! {
    async fn a_message_says_what_happened_to_it_and_why_it_waits(backend: Backend) {
        let db = TestDb::new(backend).await;
        let app = TestApp::spawn(&db).await;
        app.create_instance("alpha", quick_simulator()).await;
        set_settings(&app, "alpha", json!({"throttle": {"perMinute": 1}})).await;
        let first = id(&send_ok(&app, "alpha", json!({"number": "+15550000001", "text": "first", "priority": 7})).await);
        let log = wait_log(&app, "&instance=alpha&events=delivery", "the first text to be delivered", |log| {
            with_status(log, "delivered").contains(&first)
        })
        .await;
        let second = id(&send_ok(&app, "alpha", json!({"number": "+15550000002", "text": "second"})).await);
        let later = send_ok(&app, "alpha", json!({
            "number": "+15550000003", "text": "later",
            "sendAt": (Utc::now() + chrono::Duration::hours(1)).to_rfc3339(),
        }))
        .await;

        // The first agrees with its events.
        let found = app.get_json(&format!("/message/alpha/{first}")).await;
        let last = log
            .iter()
            .rfind(|e| e["data"]["id"] == first.as_str())
            .expect("an event");
        assert_eq!(found["status"], last["data"]["status"], "{found}");
        assert_eq!(
            (&found["id"], &found["direction"], &found["instance"], &found["number"], &found["text"], &found["priority"], &found["waiting"]),
            (&json!(first), &json!("outgoing"), &json!("alpha"), &json!("+15550000001"), &json!("first"), &json!(7), &Value::Null),
            "{found}"
        );
        // The second waits for the throttle, and says so.
        let waiting = wait_for("the second text to wait for the throttle", LONG, async || {
            let found = app.get_json(&format!("/message/alpha/{second}")).await;
            found["waiting"].as_str().map(str::to_owned).ok_or(format!("{found}"))
        })
        .await;
        assert!(waiting.starts_with("throttle: perMinute 1 reached until "), "{waiting}");
        let found = app.get_json(&format!("/message/alpha/{}", id(&later))).await;
        assert_eq!(found["waiting"], format!("scheduled: sendAt {}", later["sendAt"].as_str().expect("sendAt")), "{found}");
        let missing = app.admin(Method::GET, "/message/alpha/nope").send().await.expect("send");
        assert_eq!(missing.status(), 404);
        app.stop().await;
    }
}
