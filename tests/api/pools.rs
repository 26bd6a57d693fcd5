//! Pools: one name that sends through several instances. Their routes and
//! checks, and the routing itself: round robin (with a modem unplugged
//! mid-run over modem-sim's AT path), failover, least loaded, prefix rules,
//! a pool throttle, and an instance's random pause between sends.

use std::{collections::HashMap, time::Duration};

use chrono::{DateTime, Utc};
use reqwest::Method;
use serde_json::{json, Value};
use switchboard::tools::modem_sim::{Action, SimSettings};

use crate::helpers::*;
use crate::modem::{pty_modem, serial_driver};
use crate::on_both_backends;

pub(crate) const LONG: Duration = Duration::from_secs(60);

async fn call(
    app: &TestApp,
    key: &str,
    method: Method,
    path: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let mut request = app.with_key(method, path, key);
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.expect("send");
    let status = response.status().as_u16();
    (status, response.json().await.expect("a JSON body"))
}

async fn admin(app: &TestApp, method: Method, path: &str, body: Option<Value>) -> (u16, Value) {
    call(app, &app.admin_key.clone(), method, path, body).await
}

async fn create_pool(app: &TestApp, body: Value) -> Value {
    let (status, answer) = admin(app, Method::POST, "/pool/create", Some(body)).await;
    assert_eq!(status, 201, "{answer}");
    answer
}

async fn send(app: &TestApp, to: &str, number: &str) -> String {
    let (status, body) = admin(
        app,
        Method::POST,
        &format!("/message/sendText/{to}"),
        Some(json!({"number": number, "text": "through the pool"})),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    body["id"].as_str().expect("an id").to_owned()
}

async fn logout(app: &TestApp, instance: &str) {
    let (status, body) = admin(
        app,
        Method::DELETE,
        &format!("/instance/logout/{instance}"),
        None,
    )
    .await;
    assert_eq!(status, 200, "{body}");
}

/// The `sent` events of the pool `pool`, in log order.
pub(crate) fn sent_events(log: &[Value], pool: &str) -> Vec<Value> {
    log.iter()
        .filter(|e| {
            e["event"] == "delivery" && e["data"]["status"] == "sent" && e["data"]["pool"] == pool
        })
        .cloned()
        .collect()
}

/// Waits until `count` texts of `pool` were sent; returns their `sent` events.
async fn wait_sent(app: &TestApp, pool: &str, count: usize) -> Vec<Value> {
    wait_for(
        &format!("{count} texts of pool '{pool}' to be sent"),
        LONG,
        async || {
            let sent = sent_events(&app.read_log("&events=delivery").await, pool);
            if sent.len() >= count {
                Ok(sent)
            } else {
                Err(format!("{} sent", sent.len()))
            }
        },
    )
    .await
}

/// How many `sent` events each instance wrote.
pub(crate) fn per_member(sent: &[Value]) -> HashMap<String, usize> {
    let mut counts = HashMap::new();
    for event in sent {
        *counts
            .entry(event["instance"].as_str().unwrap_or("").to_owned())
            .or_default() += 1;
    }
    counts
}

fn at(event: &Value) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(event["timestamp"].as_str().expect("a timestamp"))
        .expect("RFC 3339")
        .with_timezone(&Utc)
}

/// Creates simulator instances and waits until each is connected (a
/// member still connecting is routed around).
async fn create_members(app: &TestApp, names: &[&str]) {
    for name in names {
        app.create_instance(name, quick_simulator()).await;
    }
    for name in names {
        wait_member_state(app, name, "open").await;
    }
}

/// Waits until `connectionState` says `member` is in `state`.
async fn wait_member_state(app: &TestApp, member: &str, state: &str) {
    wait_for(&format!("'{member}' to be {state}"), LONG, async || {
        let body = app
            .get_json(&format!("/instance/connectionState/{member}"))
            .await;
        body["instance"]["state"] == state
    })
    .await
}

on_both_backends! {
    async fn pools_are_created_checked_listed_replaced_and_deleted_and_survive_a_restart(backend: Backend) {
        let db = TestDb::new(backend).await;
        let mut settings = test_settings(&db);
        settings.limits.max_pools = 2;
        let app = TestApp::spawn_with(settings.clone()).await;
        let key_a = app.create_instance("a", quick_simulator()).await;
        let key_c = app.create_instance("c", quick_simulator()).await;
        app.create_instance("b", quick_simulator()).await;

        let created = create_pool(&app, json!({
            "name": "uk", "strategy": "round_robin", "members": ["a", "b", "c"],
            "rules": [{"prefix": "+44", "members": ["a", "b"]}],
            "throttle": {"perMinute": 30, "perDay": 1000, "perMonth": 20000},
        }))
        .await;
        let pool = &created["pool"];
        assert_eq!(pool["name"], "uk");
        assert_eq!(pool["strategy"], "round_robin");
        assert_eq!(pool["members"], json!(["a", "b", "c"]));
        assert_eq!(pool["rules"], json!([{"prefix": "+44", "members": ["a", "b"]}]));
        assert_eq!(pool["throttle"], json!({"perMinute": 30, "perDay": 1000, "perMonth": 20000}));
        assert_eq!(pool["queued"], 0);
        assert_eq!(pool["used"], json!({"minute": 0, "day": 0, "month": 0}));
        assert_eq!(pool["load"].as_array().expect("load").len(), 3);
        assert_eq!(pool["load"][0]["instance"], "a");
        assert!(pool["createdAt"].as_str().is_some(), "{pool}");

        // Each bad definition is a 400 naming its field.
        for (body, field) in [
            (json!({"name": "p", "strategy": "random", "members": ["a"]}), "'strategy'"),
            (json!({"name": "p", "strategy": "failover", "members": []}), "'members'"),
            (json!({"name": "p", "strategy": "failover", "members": ["a", "a"]}), "'members' names 'a' twice"),
            (json!({"name": "p", "strategy": "failover", "members": ["nobody"]}), "'members[0]'"),
            (json!({"name": "p", "strategy": "failover", "members": ["a"], "rules": [{"prefix": "44", "members": ["a"]}]}), "'rules[0].prefix'"),
            (json!({"name": "p", "strategy": "failover", "members": ["a"], "rules": [{"prefix": "+4", "members": ["b"]}]}), "'rules[0].members'"),
            (json!({"name": "p", "strategy": "failover", "members": ["a"], "throttle": {"perMinute": 0}}), "'throttle.perMinute'"),
            (json!({"name": "p", "strategy": "failover", "members": ["a"], "throttle": {"pauseMinMs": 5}}), "'throttle.pauseMinMs'"),
            (json!({"name": "-p", "strategy": "failover", "members": ["a"]}), "'name'"),
            (json!({"name": "p", "strategy": "failover", "members": (0..65).map(|i| format!("m{i}")).collect::<Vec<_>>()}), "at most 64"),
            (json!({"name": "p", "strategy": "failover", "members": ["a"],
                "rules": (0..65).map(|i| json!({"prefix": format!("+{}", 100 + i), "members": ["a"]})).collect::<Vec<_>>()}),
             "'rules' has 65 entries"),
        ] {
            let (status, answer) = admin(&app, Method::POST, "/pool/create", Some(body)).await;
            assert_eq!(status, 400, "{answer}");
            let message = answer["error"]["message"].as_str().unwrap_or("");
            assert!(message.contains(field), "{field}: {message}");
        }

        // Pools and instances share one namespace, both ways.
        let (status, answer) = admin(&app, Method::POST, "/pool/create",
            Some(json!({"name": "a", "strategy": "failover", "members": ["b"]}))).await;
        assert_eq!(status, 409, "{answer}");
        let (status, answer) = admin(&app, Method::POST, "/instance/create",
            Some(json!({"instanceName": "uk", "driver": quick_simulator()}))).await;
        assert_eq!(status, 409, "{answer}");

        // Instance keys may not manage pools, nor send to one.
        for (method, path, body) in [
            (Method::POST, "/pool/create", Some(json!({"name": "p", "strategy": "failover", "members": ["a"]}))),
            (Method::POST, "/pool/update/uk", Some(json!({"strategy": "failover", "members": ["a"]}))),
            (Method::DELETE, "/pool/delete/uk", None),
            (Method::POST, "/message/sendText/uk", Some(json!({"number": "+15550000001", "text": "x"}))),
        ] {
            let (status, answer) = call(&app, &key_a, method, path, body).await;
            assert_eq!(status, 403, "{path}: {answer}");
        }

        // The bound on pools, pushed past.
        create_pool(&app, json!({"name": "us", "strategy": "failover", "members": ["c"]})).await;
        let (status, answer) = admin(&app, Method::POST, "/pool/create",
            Some(json!({"name": "eu", "strategy": "failover", "members": ["a"]}))).await;
        assert_eq!(status, 400, "{answer}");
        assert!(answer["error"]["message"].as_str().unwrap_or("").contains("limits.max_pools"), "{answer}");

        // The admin sees every pool by name; an instance key its own only,
        // cut down to its instance.
        let all = app.get_json("/pool/find").await;
        let names: Vec<&str> = all["pools"].as_array().expect("pools").iter().filter_map(|p| p["name"].as_str()).collect();
        assert_eq!(names, ["uk", "us"]);
        let (status, mine) = call(&app, &key_a, Method::GET, "/pool/find", None).await;
        assert_eq!(status, 200, "{mine}");
        assert_eq!(mine["pools"].as_array().expect("pools").len(), 1, "{mine}");
        let uk = &mine["pools"][0];
        assert_eq!(uk["members"], json!(["a"]));
        assert_eq!(uk["rules"], json!([{"prefix": "+44", "members": ["a"]}]));
        assert_eq!(uk["load"].as_array().expect("load").len(), 1);
        assert!(!mine.to_string().contains("\"b\""), "{mine}");
        let (_, theirs) = call(&app, &key_c, Method::GET, "/pool/find", None).await;
        let pools = theirs["pools"].as_array().expect("pools");
        assert_eq!(pools.len(), 2, "{theirs}");
        assert_eq!(pools[0]["rules"], json!([]), "{theirs}");

        // Replaced whole; unknown pools are 404.
        let (status, updated) = admin(&app, Method::POST, "/pool/update/uk",
            Some(json!({"strategy": "failover", "members": ["b", "a"]}))).await;
        assert_eq!(status, 200, "{updated}");
        assert_eq!(updated["pool"]["strategy"], "failover");
        assert_eq!(updated["pool"]["members"], json!(["b", "a"]));
        assert_eq!(updated["pool"]["rules"], json!([]));
        let (status, _) = admin(&app, Method::POST, "/pool/update/nope",
            Some(json!({"strategy": "failover", "members": ["a"]}))).await;
        assert_eq!(status, 404);
        let (status, _) = admin(&app, Method::DELETE, "/pool/delete/nope", None).await;
        assert_eq!(status, 404);

        // A text waiting in the pool holds its deletion; it can be found
        // and cancelled under the pool's name.
        logout(&app, "a").await;
        logout(&app, "b").await;
        let waiting = send(&app, "uk", "+15550000001").await;
        let found = app.get_json(&format!("/message/uk/{waiting}")).await;
        assert_eq!(found["pool"], "uk", "{found}");
        assert_eq!(found["instance"], "uk", "{found}");
        assert_eq!(found["waiting"], "pool 'uk': no member is connected", "{found}");
        assert_eq!(app.get_json("/pool/find").await["pools"][0]["queued"], 1);
        assert_eq!(metric(&app, "switchboard_pool_queued{pool=\"uk\"}").await, 1);
        assert_eq!(metric(&app, "switchboard_pool_queued{pool=\"us\"}").await, 0);
        let (status, answer) = admin(&app, Method::DELETE, "/pool/delete/uk", None).await;
        assert_eq!(status, 409, "{answer}");
        assert!(answer["error"]["message"].as_str().unwrap_or("").contains("1 message"), "{answer}");
        let (status, answer) = admin(&app, Method::DELETE, &format!("/message/uk/{waiting}"), None).await;
        assert_eq!(status, 200, "{answer}");
        let log = app.read_log("&instance=uk").await;
        let kinds: Vec<(String, String)> = log.iter()
            .map(|e| (e["event"].as_str().unwrap_or("").to_owned(), e["data"]["pool"].as_str().unwrap_or("").to_owned()))
            .collect();
        assert_eq!(kinds, [("message".to_owned(), "uk".to_owned()), ("delivery".into(), "uk".into()), ("delivery".into(), "uk".into())]);

        // Pools survive a restart; deleting an instance takes it out of them.
        app.stop().await;
        let app = TestApp::spawn_with(settings).await;
        let names: Vec<String> = app.get_json("/pool/find").await["pools"].as_array().expect("pools")
            .iter().filter_map(|p| p["name"].as_str().map(str::to_owned)).collect();
        assert_eq!(names, ["uk", "us"]);
        let (status, _) = admin(&app, Method::DELETE, "/instance/delete/a", None).await;
        assert_eq!(status, 200);
        let uk = app.get_json("/pool/find").await["pools"][0].clone();
        assert_eq!(uk["members"], json!(["b"]), "{uk}");
        let (status, answer) = admin(&app, Method::DELETE, "/pool/delete/uk", None).await;
        assert_eq!(status, 200, "{answer}");
        assert_eq!(answer, json!({"deleted": "uk"}));
        // The name is free for an instance, which reads none of the pool's texts.
        let key = app.create_instance("uk", quick_simulator()).await;
        let (status, events) = call(&app, &key, Method::GET, "/events?instance=uk&events=message,delivery", None).await;
        assert_eq!(status, 200, "{events}");
        assert_eq!(events["events"], json!([]), "{events}");
        app.stop().await;
    }

    async fn round_robin_takes_turns_and_every_event_names_the_member_and_the_pool(backend: Backend) {
        let db = TestDb::new(backend).await;
        let app = TestApp::spawn(&db).await;
        create_members(&app, &["a", "b", "c"]).await;
        create_pool(&app, json!({"name": "rr", "strategy": "round_robin", "members": ["a", "b", "c"]})).await;
        let mut ids = Vec::new();
        for n in 0..30 {
            ids.push(send(&app, "rr", &format!("+1555000{n:04}")).await);
        }
        let sent = wait_sent(&app, "rr", 30).await;
        assert_eq!(sent.len(), 30);
        let counts = per_member(&sent);
        assert_eq!(counts.get("a"), Some(&10), "{counts:?}");
        assert_eq!(counts.get("b"), Some(&10), "{counts:?}");
        assert_eq!(counts.get("c"), Some(&10), "{counts:?}");
        // Accepted under the pool's name; sent under the member's.
        let accepted = app.read_log("&instance=rr").await;
        assert_eq!(accepted.len(), 60);
        assert!(accepted.iter().all(|e| e["data"]["pool"] == "rr"));
        let found = app.get_json(&format!("/message/rr/{}", ids[0])).await;
        let member = found["instance"].as_str().expect("a member").to_owned();
        assert!(["a", "b", "c"].contains(&member.as_str()), "{found}");
        assert_eq!(found["pool"], "rr");
        let by_member = app.get_json(&format!("/message/{member}/{}", ids[0])).await;
        assert_eq!(by_member["id"], ids[0].as_str(), "{by_member}");
        let view = app.get_json("/pool/find").await["pools"][0].clone();
        assert_eq!(view["queued"], 0);
        assert_eq!(view["used"]["day"], 30, "{view}");
        app.stop().await;
    }

    async fn failover_sends_everything_through_the_first_member_until_it_is_logged_out(backend: Backend) {
        let db = TestDb::new(backend).await;
        let app = TestApp::spawn(&db).await;
        create_members(&app, &["first", "second"]).await;
        create_pool(&app, json!({"name": "fo", "strategy": "failover", "members": ["first", "second"]})).await;
        for n in 0..6 {
            send(&app, "fo", &format!("+1555000{n:04}")).await;
        }
        let sent = wait_sent(&app, "fo", 6).await;
        assert_eq!(per_member(&sent), HashMap::from([("first".to_owned(), 6)]));
        logout(&app, "first").await;
        for n in 0..4 {
            send(&app, "fo", &format!("+1555100{n:04}")).await;
        }
        let sent = wait_sent(&app, "fo", 10).await;
        assert_eq!(per_member(&sent[6..]), HashMap::from([("second".to_owned(), 4)]));
        app.stop().await;
    }

    async fn least_loaded_sends_through_the_member_with_the_shorter_queue(backend: Backend) {
        let db = TestDb::new(backend).await;
        let app = TestApp::spawn(&db).await;
        create_members(&app, &["busy", "idle"]).await;
        // Five texts scheduled an hour ahead count as busy's queue.
        let later = (Utc::now() + chrono::Duration::hours(1)).to_rfc3339();
        for n in 0..5 {
            let (status, body) = admin(&app, Method::POST, "/message/sendText/busy",
                Some(json!({"number": format!("+1555200{n:04}"), "text": "later", "sendAt": later}))).await;
            assert_eq!(status, 201, "{body}");
        }
        create_pool(&app, json!({"name": "ll", "strategy": "least_loaded", "members": ["busy", "idle"]})).await;
        for n in 0..4 {
            send(&app, "ll", &format!("+1555000{n:04}")).await;
        }
        let sent = wait_sent(&app, "ll", 4).await;
        assert_eq!(per_member(&sent), HashMap::from([("idle".to_owned(), 4)]));
        let view = app.get_json("/pool/find").await["pools"][0].clone();
        assert_eq!(view["load"][0]["queued"], 5, "{view}");
        assert_eq!(view["load"][1]["sent"], 4, "{view}");
        app.stop().await;
    }

    async fn a_prefix_rule_keeps_its_destinations_on_its_members(backend: Backend) {
        let db = TestDb::new(backend).await;
        let app = TestApp::spawn(&db).await;
        create_members(&app, &["a", "b"]).await;
        create_pool(&app, json!({"name": "px", "strategy": "round_robin", "members": ["a", "b"],
            "rules": [{"prefix": "+44", "members": ["b"]}, {"prefix": "+447", "members": ["a"]}]})).await;
        let mut uk = Vec::new();
        for n in 0..4 {
            uk.push(send(&app, "px", &format!("+44207{n:07}")).await);
        }
        let mobile = send(&app, "px", "+447700900123").await;
        let sent = wait_sent(&app, "px", 5).await;
        for event in &sent {
            let id = event["data"]["id"].as_str().unwrap_or("");
            let expected = if id == mobile { "a" } else { "b" };
            assert!(uk.iter().any(|u| u == id) || id == mobile, "{event}");
            assert_eq!(event["instance"], expected, "{event}");
        }
        app.stop().await;
    }

    async fn priority_send_at_and_expiry_hold_for_pool_texts(backend: Backend) {
        let db = TestDb::new(backend).await;
        let app = TestApp::spawn(&db).await;
        create_members(&app, &["solo"]).await;
        create_pool(&app, json!({"name": "sched", "strategy": "failover", "members": ["solo"]})).await;
        logout(&app, "solo").await;
        let text = |number: &str, extra: Value| {
            let mut body = json!({"number": number, "text": "scheduled"});
            for (key, value) in extra.as_object().expect("object") {
                body[key] = value.clone();
            }
            body
        };
        let mut ids = Vec::new();
        let send_at = Utc::now() + chrono::Duration::seconds(2);
        for body in [
            text("+15550000001", json!({"priority": 1})),
            text("+15550000002", json!({"priority": 9})),
            text("+15550000003", json!({"ttlSecs": 1})),
            text("+15550000004", json!({"priority": 9, "sendAt": send_at.to_rfc3339()})),
        ] {
            let (status, answer) = admin(&app, Method::POST, "/message/sendText/sched", Some(body)).await;
            assert_eq!(status, 201, "{answer}");
            assert_eq!(answer["pool"], "sched", "{answer}");
            ids.push(answer["id"].as_str().expect("an id").to_owned());
        }
        let (low, high, short, later) = (&ids[0], &ids[1], &ids[2], &ids[3]);
        // The short-lived one runs out while no member is there.
        let expires = app.get_json(&format!("/message/sched/{short}")).await;
        let expires = DateTime::parse_from_rfc3339(expires["validUntil"].as_str().expect("validUntil"))
            .expect("RFC 3339")
            .with_timezone(&Utc);
        wait_for("the short-lived text's time to run out", LONG, async || Utc::now() > expires).await;
        let (status, _) = admin(&app, Method::GET, "/instance/connect/solo", None).await;
        assert_eq!(status, 200);
        let sent = wait_sent(&app, "sched", 3).await;
        let order: Vec<&str> = sent.iter().filter_map(|e| e["data"]["id"].as_str()).collect();
        assert_eq!(order, [high.as_str(), low.as_str(), later.as_str()]);
        assert!(at(&sent[2]) >= send_at, "sent before its sendAt: {}", sent[2]);
        let log = app.read_log("&events=delivery").await;
        let expired: Vec<&Value> = log.iter().filter(|e| e["data"]["id"] == short.as_str()).collect();
        assert_eq!(expired.len(), 2, "{expired:?}");
        assert_eq!(expired[1]["data"]["status"], "expired");
        assert_eq!(expired[1]["instance"], "sched", "no member sent it");
        assert_eq!(expired[1]["data"]["pool"], "sched");
        app.stop().await;
    }

    async fn a_round_robin_turn_its_member_does_not_take_passes_on(backend: Backend) {
        let db = TestDb::new(backend).await;
        let app = TestApp::spawn(&db).await;
        create_members(&app, &["held", "free"]).await;
        // "held" pauses ten minutes after a send: connected, yet it takes
        // no second turn.
        let (status, body) = admin(&app, Method::POST, "/settings/set/held",
            Some(json!({"throttle": {"pauseMinMs": 600_000}}))).await;
        assert_eq!(status, 200, "{body}");
        create_pool(&app, json!({"name": "turns", "strategy": "round_robin", "members": ["held", "free"]})).await;
        for n in 0..4 {
            send(&app, "turns", &format!("+1555000{n:04}")).await;
        }
        let sent = wait_sent(&app, "turns", 4).await;
        let counts = per_member(&sent);
        assert!(counts.get("held").copied().unwrap_or(0) <= 1, "{counts:?}");
        assert!(counts.get("free").copied().unwrap_or(0) >= 3, "{counts:?}");
        app.stop().await;
    }

    async fn a_pool_throttle_holds_a_burst_across_all_members(backend: Backend) {
        let db = TestDb::new(backend).await;
        let mut settings = test_settings(&db);
        settings.modem.throttle_minute_ms = 2000;
        let app = TestApp::spawn_with(settings).await;
        create_members(&app, &["a", "b"]).await;
        create_pool(&app, json!({"name": "th", "strategy": "round_robin", "members": ["a", "b"],
            "throttle": {"perMinute": 2}})).await;
        let mut ids = Vec::new();
        for n in 0..6 {
            ids.push(send(&app, "th", &format!("+1555000{n:04}")).await);
        }
        let first = wait_sent(&app, "th", 2).await;
        let waiting = ids.iter().find(|id| !first.iter().any(|e| e["data"]["id"] == id.as_str())).expect("one waits");
        let view = app.get_json(&format!("/message/th/{waiting}")).await;
        if view["status"] == "queued" && view["instance"] == "th" {
            let reason = view["waiting"].as_str().unwrap_or("");
            assert!(reason.starts_with("pool 'th': throttle: perMinute 2 reached"), "{view}");
        }
        let sent = wait_sent(&app, "th", 6).await;
        // No more sends than the limit within one (short, 2 s) minute. The
        // sent step follows each claim after the same 20 ms, give or take
        // how busy the driver is: half a second of slack, while without
        // the limit all six would go out within a few milliseconds.
        for pair in sent.windows(3) {
            let gap = at(&pair[2]) - at(&pair[0]);
            assert!(gap >= chrono::Duration::milliseconds(1500), "three sends within {gap}: {pair:?}");
        }
        assert_eq!(per_member(&sent).len(), 2, "both members took part");
        app.stop().await;
    }

    async fn an_instance_pauses_a_random_time_between_two_sends(backend: Backend) {
        let db = TestDb::new(backend).await;
        let app = TestApp::spawn(&db).await;
        app.create_instance("slow", quick_simulator()).await;
        for (throttle, field) in [
            (json!({"pauseMinMs": 600_001}), "'throttle.pauseMinMs'"),
            (json!({"pauseMinMs": 500, "pauseMaxMs": 100}), "must not be above"),
        ] {
            let (status, body) = admin(&app, Method::POST, "/settings/set/slow", Some(json!({"throttle": throttle}))).await;
            assert_eq!(status, 400, "{body}");
            assert!(body["error"]["message"].as_str().unwrap_or("").contains(field), "{body}");
        }
        let (status, body) = admin(&app, Method::POST, "/settings/set/slow",
            Some(json!({"throttle": {"pauseMinMs": 300, "pauseMaxMs": 400}}))).await;
        assert_eq!(status, 200, "{body}");
        for n in 0..4 {
            app.send_text("slow", &format!("+1555000{n:04}"), "pause").await;
        }
        let sent = wait_for("four sends", LONG, async || {
            let log = app.read_log("&instance=slow&events=delivery").await;
            let sent: Vec<Value> = log.into_iter().filter(|e| e["data"]["status"] == "sent").collect();
            if sent.len() >= 4 { Ok(sent) } else { Err(format!("{} sent", sent.len())) }
        })
        .await;
        for pair in sent.windows(2) {
            let gap = at(&pair[1]) - at(&pair[0]);
            assert!(gap >= chrono::Duration::milliseconds(280), "sent {gap} apart: {pair:?}");
        }
        app.stop().await;
    }
}

on_both_backends! {
    // The test: 300 texts to a round-robin pool of three modems on
    // modem-sim's AT path, one modem unplugged mid-run. Every text goes out
    // exactly once, each `sent` names the member and the pool, and while the
    // unplugged member is away the others send its share.
    async fn three_hundred_texts_to_a_round_robin_pool_survive_an_unplugged_modem(backend: Backend) {
        const TEXTS: usize = 300;
        let db = TestDb::new(backend).await;
        let mut sims = Vec::new();
        for _ in 0..3 {
            sims.push(pty_modem(&db.dir, SimSettings::default()).await);
        }
        let app = TestApp::spawn(&db).await;
        for (name, sim) in ["a", "b", "c"].iter().zip(&sims) {
            app.create_instance(name, serial_driver(sim)).await;
        }
        for name in ["a", "b", "c"] {
            wait_member_state(&app, name, "open").await;
        }
        create_pool(
            &app,
            json!({"name": "bank", "strategy": "round_robin", "members": ["a", "b", "c"]}),
        )
        .await;
        let mut ids = Vec::with_capacity(TEXTS);
        for n in 0..TEXTS {
            ids.push(send(&app, "bank", &format!("+1555000{n:04}")).await);
        }
        wait_sent(&app, "bank", 30).await;
        sims[1]
            .act(Action::DropPort { ms: 3000 })
            .await
            .expect("unplug");
        let sent = wait_sent(&app, "bank", TEXTS).await;

        // Exactly once each.
        let mut times: HashMap<&str, usize> = HashMap::new();
        for event in &sent {
            *times
                .entry(event["data"]["id"].as_str().unwrap_or(""))
                .or_default() += 1;
        }
        assert_eq!(times.len(), TEXTS);
        assert!(times.values().all(|n| *n == 1), "a text was sent twice");
        assert!(ids.iter().all(|id| times.contains_key(id.as_str())));
        // Each sent by a member, naming it and the pool.
        assert!(sent.iter().all(
            |e| ["a", "b", "c"].contains(&e["instance"].as_str().unwrap_or(""))
                && e["data"]["pool"] == "bank"
        ));

        // While b was away (its disconnection to its reconnection), a and c
        // sent and b did not.
        let connections = app.read_log("&instance=b&events=connection").await;
        let gone = connections
            .iter()
            .find(|e| e["data"]["state"] == "disconnected")
            .and_then(|e| e["id"].as_i64())
            .expect("b's unplug is reported");
        let back = connections
            .iter()
            .find(|e| e["data"]["state"] == "connected" && e["id"].as_i64() > Some(gone))
            .and_then(|e| e["id"].as_i64())
            .unwrap_or(i64::MAX);
        let away: Vec<&Value> = sent
            .iter()
            .filter(|e| e["id"].as_i64().is_some_and(|id| id > gone && id < back))
            .collect();
        assert!(!away.is_empty(), "nothing was sent while b was away");
        assert!(
            away.iter().all(|e| e["instance"] != "b"),
            "b sent while unplugged"
        );
        let counts = per_member(&sent);
        assert!(
            counts.get("b").copied().unwrap_or(0) < counts.get("a").copied().unwrap_or(0)
                || counts.get("b").copied().unwrap_or(0) < counts.get("c").copied().unwrap_or(0),
            "b's share went through the others: {counts:?}"
        );
        app.stop().await;
        for sim in sims {
            sim.stop().await;
        }
    }
}
