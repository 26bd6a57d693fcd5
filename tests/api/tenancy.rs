//! Hostile tenants: what one credential does cannot hurt another, leak
//! another's events, or outlive the instance it was issued for.

use std::time::Duration;

use reqwest::Method;
use serde_json::{json, Value};
use switchboard::event::data::Direction;

use crate::helpers::*;
use crate::on_both_backends;

/// Generous for a loaded 2-core machine; waits end as soon as they can.
const LONG: Duration = Duration::from_secs(60);

async fn mint(app: &TestApp, key: &str, body: Value) -> Value {
    let response = app
        .with_key(Method::POST, "/auth/token", key)
        .json(&body)
        .send()
        .await
        .expect("send");
    let status = response.status();
    let body: Value = response.json().await.expect("json");
    assert_eq!(status, 201, "{body}");
    body
}

fn token_of(minted: &Value) -> String {
    minted["token"].as_str().expect("a token").to_owned()
}

/// Reads a WebSocket to its close: the ids of the events it got, the error
/// codes it was sent, and the close code.
async fn read_to_close(ws: &mut WsClient) -> (Vec<i64>, Vec<String>, u16) {
    let (mut ids, mut errors) = (Vec::new(), Vec::new());
    loop {
        match ws.next(WAIT).await {
            Received::Json(frame) if frame.get("type").is_none() => {
                ids.push(frame["id"].as_i64().expect("id"));
            }
            Received::Json(frame) => {
                if frame["type"] == "error" {
                    errors.push(frame["data"]["code"].as_str().unwrap_or("").to_owned());
                }
            }
            Received::Closed(close) => {
                return (ids, errors, close.map_or(0, |(code, _)| code));
            }
        }
    }
}

/// Reads an SSE stream to its end: event ids and the codes of error events.
async fn read_sse_to_end(sse: &mut SseClient) -> (Vec<i64>, Vec<String>) {
    let (mut ids, mut errors) = (Vec::new(), Vec::new());
    while let Some(item) = sse.next_item(WAIT).await {
        if let SseItem::Event(event) = item {
            let data: Value = serde_json::from_str(&event.data).expect("JSON data");
            if event.event.as_deref() == Some("error") {
                errors.push(data["code"].as_str().unwrap_or("").to_owned());
            } else {
                ids.push(data["id"].as_i64().expect("id"));
            }
        }
    }
    (ids, errors)
}

on_both_backends! {
    async fn deleting_an_instance_ends_the_streams_of_its_key_and_tokens_and_none_sees_a_namesake(backend: Backend) {
        let db = TestDb::new(backend).await;
        let app = TestApp::spawn(&db).await;
        let key = app.create_instance("alpha", quick_simulator()).await;
        let own_token = token_of(&mint(&app, &key, json!({ "ttlSecs": 600 })).await);
        let admin_made = token_of(
            &mint(&app, &app.admin_key, json!({ "instances": ["alpha"], "ttlSecs": 600 })).await,
        );
        let mut sockets = vec![
            app.ws(&format!("/ws?apikey={key}&events=message")).await,
            app.ws(&format!("/ws/alpha?token={own_token}&events=message")).await,
            app.ws(&format!("/ws?token={admin_made}&events=message")).await,
        ];
        let mut streams = vec![
            SseClient::open(&app, &format!("/events/stream?apikey={key}&events=message"), None).await,
            SseClient::open(&app, &format!("/events/stream?token={own_token}&events=message"), None).await,
        ];
        // Every stream is live: each gets this marker.
        let before = append_marker(&app.log, "alpha", marker_message(Direction::Incoming, "before")).await;
        for ws in &mut sockets {
            ws.assert_next_is_marker(before).await;
        }
        for sse in &mut streams {
            let event = sse.event(WAIT).await;
            assert_eq!(event.id, Some(before.to_string()));
        }

        let deleted = app.admin(Method::DELETE, "/instance/delete/alpha").send().await.expect("send");
        assert_eq!(deleted.status(), 200);
        // What was committed up to the deletion is the old instance's.
        let cut = *app
            .read_log("")
            .await
            .iter()
            .map(|e| e["id"].as_i64().expect("id"))
            .collect::<Vec<_>>()
            .last()
            .expect("events");
        // A new instance takes the name and talks at once.
        let new_key = app.create_instance("alpha", quick_simulator()).await;
        let secret = append_marker(&app.log, "alpha", marker_message(Direction::Incoming, "the new alpha's secret")).await;
        assert!(secret > cut);

        for ws in &mut sockets {
            let (ids, errors, code) = read_to_close(ws).await;
            assert!(ids.iter().all(|id| *id <= cut), "a revoked stream got {ids:?} (cut {cut})");
            assert_eq!(errors, ["CREDENTIAL_REVOKED"]);
            assert_eq!(code, 4003);
        }
        for sse in &mut streams {
            let (ids, errors) = read_sse_to_end(sse).await;
            assert!(ids.iter().all(|id| *id <= cut), "a revoked stream got {ids:?} (cut {cut})");
            assert_eq!(errors, ["CREDENTIAL_REVOKED"]);
        }

        // Neither the old key nor the tokens minted before the delete open
        // anything on the new instance.
        for path in [
            format!("/ws?token={own_token}"),
            format!("/ws/alpha?token={admin_made}"),
            format!("/ws/alpha?apikey={key}"),
        ] {
            let mut ws = app.ws(&path).await;
            assert_eq!(ws.json(WAIT).await["data"]["code"], "AUTH_FAILED", "{path}");
            assert_eq!(ws.closed(WAIT).await.0, 1008, "{path}");
        }
        for path in [format!("/events/stream?token={own_token}"), format!("/events/stream?apikey={key}")] {
            let refused = app.http.get(app.url(&path)).send().await.expect("send");
            assert_eq!(refused.status(), 401, "{path}");
        }
        // The new instance's own key works and sees its event.
        let mut fresh = app.ws(&format!("/ws?apikey={new_key}&events=message&since={cut}")).await;
        assert_eq!(fresh.event(WAIT).await["id"].as_i64(), Some(secret));
        fresh.close().await;
        app.stop().await;
    }

    async fn token_subjects_decide_nothing_and_connections_count_per_minting_key_and_per_instance(backend: Backend) {
        let db = TestDb::new(backend).await;
        let mut settings = test_settings(&db);
        settings.limits.max_connections_per_credential = 3;
        settings.limits.max_connections_per_instance = 4;
        let app = TestApp::spawn_with(settings).await;
        let alpha_key = app.create_instance("alpha", quick_simulator()).await;
        let beta_key = app.create_instance("beta", quick_simulator()).await;

        // An instance key cannot mint a subject that names someone else.
        let minted = mint(&app, &alpha_key, json!({ "subject": "admin" })).await;
        assert_eq!(minted["subject"], "instance:alpha/admin");
        let minted = mint(&app, &alpha_key, json!({ "subject": "instance:beta" })).await;
        assert_eq!(minted["subject"], "instance:alpha/instance:beta");

        // The admin's dashboard token, and alpha's key minting tokens with
        // the same subject to use up its connections.
        let dashboard = token_of(&mint(&app, &app.admin_key, json!({ "subject": "dashboard" })).await);
        let mut held = Vec::new();
        for _ in 0..2 {
            let token = token_of(&mint(&app, &alpha_key, json!({ "subject": "dashboard" })).await);
            held.push(app.ws(&format!("/ws?token={token}")).await);
        }
        held.push(app.ws(&format!("/ws?apikey={alpha_key}")).await);
        // Alpha's key and every token it minted are one credential: full.
        let other_subject = token_of(&mint(&app, &alpha_key, json!({ "subject": "elsewhere" })).await);
        let mut refused = app.ws(&format!("/ws?token={other_subject}")).await;
        assert_eq!(refused.json(WAIT).await["data"]["code"], "CONNECTION_LIMIT");
        assert_eq!(refused.closed(WAIT).await.0, 1013);
        // The admin's token with that subject is not touched by it.
        let mut admin_stream = app.ws(&format!("/ws?token={dashboard}")).await;
        admin_stream.send_json(json!({ "type": "ping" })).await;
        assert_eq!(admin_stream.control(WAIT).await["type"], "pong");

        // Per instance: alpha holds 3; one more of anyone's fills it.
        let for_alpha = token_of(&mint(&app, &app.admin_key, json!({ "instances": ["alpha"] })).await);
        let mut fourth = app.ws(&format!("/ws/alpha?token={for_alpha}")).await;
        fourth.send_json(json!({ "type": "ping" })).await;
        assert_eq!(fourth.control(WAIT).await["type"], "pong");
        let mut fifth = app.ws(&format!("/ws/alpha?token={for_alpha}")).await;
        assert_eq!(fifth.json(WAIT).await["data"]["code"], "CONNECTION_LIMIT");
        let sse = app
            .http
            .get(app.url(&format!("/events/stream?token={for_alpha}")))
            .send()
            .await
            .expect("send");
        assert_eq!(sse.status(), 429);
        // Beta is another instance with its own room.
        let mut beta = app.ws(&format!("/ws?apikey={beta_key}")).await;
        beta.send_json(json!({ "type": "ping" })).await;
        assert_eq!(beta.control(WAIT).await["type"], "pong");
        app.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn behind_a_proxy_failures_count_per_client_and_never_lock_out_a_valid_key() {
    let wrong = |app: &TestApp, forwarded: Option<&str>| {
        let mut request = app.with_key(Method::GET, "/instance/fetchInstances", "wrong-key");
        if let Some(forwarded) = forwarded {
            request = request.header("X-Forwarded-For", forwarded);
        }
        async move { request.send().await.expect("send").status().as_u16() }
    };

    // Everyone comes through one proxy the server does not know: the
    // failures of some cannot lock out a valid key.
    let db = TestDb::new(Backend::Sqlite).await;
    let mut settings = test_settings(&db);
    settings.limits.failed_auth_per_minute = 3;
    let app = TestApp::spawn_with(settings.clone()).await;
    let mut statuses = Vec::new();
    for _ in 0..5 {
        statuses.push(wrong(&app, None).await);
    }
    assert_eq!(statuses, [401, 401, 401, 429, 429]);
    let right = app
        .admin(Method::GET, "/instance/fetchInstances")
        .send()
        .await
        .expect("send");
    assert_eq!(right.status(), 200);
    let mut ws = app.ws(&format!("/ws?apikey={}", app.admin_key)).await;
    ws.send_json(json!({ "type": "ping" })).await;
    assert_eq!(ws.control(WAIT).await["type"], "pong");
    let sse = app
        .http
        .get(app.url(&format!("/events/stream?apikey={}", app.admin_key)))
        .send()
        .await
        .expect("send");
    assert_eq!(sse.status(), 200);
    drop(sse);
    ws.close().await;
    app.stop().await;

    // The proxy is trusted: each client is counted by the address it names.
    let db = TestDb::new(Backend::Sqlite).await;
    let mut trusted = test_settings(&db);
    trusted.limits.failed_auth_per_minute = 3;
    trusted.http.trusted_proxies = vec!["127.0.0.1".parse().expect("an address")];
    let app = TestApp::spawn_with(trusted).await;
    let mut statuses = Vec::new();
    for _ in 0..4 {
        statuses.push(wrong(&app, Some("203.0.113.5")).await);
    }
    assert_eq!(statuses, [401, 401, 401, 429]);
    assert_eq!(
        wrong(&app, Some("198.51.100.7")).await,
        401,
        "another client"
    );
    // What a client writes left of the address the proxy added is not
    // believed: this is still 203.0.113.5.
    assert_eq!(wrong(&app, Some("198.51.100.7, 203.0.113.5")).await, 429);
    app.stop().await;

    // A peer that is not a trusted proxy cannot pick its address.
    let db = TestDb::new(Backend::Sqlite).await;
    let mut untrusted = test_settings(&db);
    untrusted.limits.failed_auth_per_minute = 3;
    untrusted.http.trusted_proxies = vec!["10.0.0.0/8".parse().expect("a network")];
    let app = TestApp::spawn_with(untrusted).await;
    let mut statuses = Vec::new();
    for n in 0..4 {
        statuses.push(wrong(&app, Some(&format!("198.51.100.{n}"))).await);
    }
    assert_eq!(statuses, [401, 401, 401, 429]);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_beyond_its_range_is_refused_with_the_range_named() {
    let db = TestDb::new(Backend::Sqlite).await;
    let app = TestApp::spawn(&db).await;
    app.create_instance("alpha", quick_simulator()).await;
    for body in [
        json!({ "maxAgeSecs": u64::MAX }),
        json!({ "maxAgeSecs": u64::MAX - 1 }),
        json!({ "maxAgeSecs": 1u64 << 63 }),
        json!({ "maxAgeSecs": 3_153_600_001u64 }),
        json!({ "maxEvents": u64::MAX }),
    ] {
        let response = app
            .admin(Method::POST, "/retention/set/alpha")
            .json(&body)
            .send()
            .await
            .expect("send");
        assert_eq!(response.status(), 400, "{body}");
        let error: Value = response.json().await.expect("json");
        let message = error["error"]["message"].as_str().unwrap_or("");
        assert!(
            message.contains("between 0 (no limit) and"),
            "{body}: {message}"
        );
    }
    let created = app
        .admin(Method::POST, "/instance/create")
        .json(&json!({ "instanceName": "beta", "retention": { "maxAgeSecs": u64::MAX } }))
        .send()
        .await
        .expect("send");
    assert_eq!(created.status(), 400);
    // The largest allowed age is accepted.
    let ok = app
        .admin(Method::POST, "/retention/set/alpha")
        .json(&json!({ "maxAgeSecs": 3_153_600_000u64 }))
        .send()
        .await
        .expect("send");
    assert_eq!(ok.status(), 200);
    app.stop().await;
}

on_both_backends! {
    // The group bounds hold in the commit as well as in the request: two
    // nodes' requests that each fit on their own (here: their jobs, sent
    // straight to the log as each node's service would after its check)
    // cannot pass a bound together, and the one refused changes nothing.
    async fn group_bounds_hold_in_the_commit_whatever_each_request_saw(backend: Backend) {
        use switchboard::{domain::InstanceName, store::{Change, GroupRow, Job, StoreError}};
        let db = TestDb::new(backend).await;
        let app = TestApp::spawn(&db).await;
        app.create_instance("alpha", quick_simulator()).await;
        let created: Value = app
            .admin(Method::POST, "/group/create/alpha")
            .json(&json!({ "subject": "team", "participants": ["+15551110001"] }))
            .send()
            .await
            .expect("send")
            .json()
            .await
            .expect("json");
        let jid = created["id"].as_str().expect("group id").to_owned();
        let alpha = InstanceName::parse("alpha").expect("a name");
        let add = |first: u32| Job {
            events: Vec::new(),
            changes: vec![Change::AddGroupMembers {
                instance: alpha.clone(),
                id: jid.clone(),
                members: (first..first + 6).map(|n| format!("+1555222{n:04}")).collect(),
                max_members: 10,
            }],
            fence: None,
        };
        app.log.append(add(0)).await.expect("7 members of 10");
        let refused = app.log.append(add(100)).await.expect_err("13 members of 10");
        assert!(
            matches!(&refused, StoreError::Conflict(m) if m.contains("limits.max_group_members")),
            "{refused:?}"
        );
        let listed: Value = app.get_json("/group/fetchAllGroups/alpha").await;
        assert_eq!(listed[0]["participants"].as_array().map(Vec::len), Some(7), "{listed}");

        // alpha has one group; a second one where one is the most is refused.
        let group = |id: &str| GroupRow {
            instance: alpha.clone(),
            id: id.to_owned(),
            name: "another".into(),
            owner: "+15550001000".into(),
            participants: vec!["+15551110001".into()],
            created_at: chrono::Utc::now(),
        };
        let refused = app
            .log
            .append(Job {
                events: Vec::new(),
                changes: vec![Change::CreateGroup { group: group("x@g.us"), max_groups: 1 }],
                fence: None,
            })
            .await
            .expect_err("a second group of one");
        assert!(
            matches!(&refused, StoreError::Conflict(m) if m.contains("limits.max_groups_per_instance")),
            "{refused:?}"
        );
        let listed: Value = app.get_json("/group/fetchAllGroups/alpha").await;
        assert_eq!(listed.as_array().map(Vec::len), Some(1), "{listed}");
        app.stop().await;
    }
}

on_both_backends! {
    async fn groups_and_sends_are_bounded_and_a_huge_send_leaves_the_instance_responsive(backend: Backend) {
        let db = TestDb::new(backend).await;
        let mut settings = test_settings(&db);
        settings.limits.max_group_members = 5;
        settings.limits.max_messages_per_send = 3;
        settings.limits.max_groups_per_instance = 2;
        let app = TestApp::spawn_with(settings).await;
        app.create_instance("alpha", quick_simulator()).await;
        let numbers = |range: std::ops::Range<u32>| -> Vec<String> {
            range.map(|n| format!("+1555{n:07}")).collect()
        };
        let group = |subject: &str, members: Vec<String>| {
            app.admin(Method::POST, "/group/create/alpha")
                .json(&json!({ "subject": subject, "participants": members }))
        };
        // A group over the total is refused at creation...
        let over = group("big", numbers(0..6)).send().await.expect("send");
        assert_eq!(over.status(), 400);
        let created: Value = group("small", numbers(0..3)).send().await.expect("send").json().await.expect("json");
        let jid = created["id"].as_str().expect("group id").to_owned();
        let add = |members: Vec<String>| {
            app.admin(Method::POST, "/group/updateParticipant/alpha")
                .json(&json!({ "groupJid": jid, "action": "add", "participants": members }))
        };
        // ...and when added to, a request at a time: 3 + 2 fits, one more does not.
        assert_eq!(add(numbers(3..5)).send().await.expect("send").status(), 200);
        let passing = add(numbers(5..6)).send().await.expect("send");
        assert_eq!(passing.status(), 400);
        let message: Value = passing.json().await.expect("json");
        assert!(message["error"]["message"].as_str().unwrap_or("").contains("at most 5"), "{message}");
        // Members already there do not count twice.
        assert_eq!(add(numbers(0..2)).send().await.expect("send").status(), 200);
        // Groups per instance.
        assert_eq!(group("second", numbers(0..1)).send().await.expect("send").status(), 201);
        assert_eq!(group("third", numbers(0..1)).send().await.expect("send").status(), 400);

        // A send that would create more messages than one send may is
        // refused, and nothing of it is committed.
        let before = app.read_log("&instance=alpha&events=outgoing").await.len();
        let send = app
            .admin(Method::POST, "/message/sendText/alpha")
            .json(&json!({ "number": jid, "text": "to everyone" }))
            .send()
            .await
            .expect("send");
        assert_eq!(send.status(), 400);
        assert_eq!(app.read_log("&instance=alpha&events=outgoing").await.len(), before);
        app.stop().await;

        // Within much larger limits, a send to thousands leaves the
        // instance answering: its driver serves a command between two
        // pieces of the send instead of after all of it.
        const MEMBERS: u32 = 5000;
        let db = TestDb::new(backend).await;
        let mut settings = test_settings(&db);
        settings.limits.max_group_members = MEMBERS as usize;
        settings.limits.max_messages_per_send = MEMBERS as usize;
        let app = TestApp::spawn_with(settings).await;
        app.create_instance("alpha", json!({ "kind": "simulator", "sent_delay_ms": 0, "delivered_delay_ms": 0, "echo": false })).await;
        let created: Value = app
            .admin(Method::POST, "/group/create/alpha")
            .json(&json!({ "subject": "everyone", "participants": numbers(0..1000) }))
            .send()
            .await
            .expect("send")
            .json()
            .await
            .expect("json");
        let jid = created["id"].as_str().expect("group id").to_owned();
        for start in (1000..MEMBERS).step_by(1000) {
            let added = app
                .admin(Method::POST, "/group/updateParticipant/alpha")
                .json(&json!({ "groupJid": jid, "action": "add", "participants": numbers(start..start + 1000) }))
                .send()
                .await
                .expect("send");
            assert_eq!(added.status(), 200);
        }
        let send = app
            .admin(Method::POST, "/message/sendText/alpha")
            .json(&json!({ "number": jid, "text": "to everyone" }))
            .send()
            .await
            .expect("send");
        assert_eq!(send.status(), 201);
        // The simulator answers "no call is ringing" (404) once its loop
        // gets to the command; a driver stuck in the send would not answer
        // in time (409) or only after sending everything.
        let answer = app
            .admin(Method::POST, "/call/reject/alpha")
            .json(&json!({}))
            .send()
            .await
            .expect("send");
        assert_eq!(answer.status(), 404, "{}", answer.text().await.unwrap_or_default());
        let marker = append_marker(&app.log, "alpha", marker_delivery("marker")).await;
        let sent_before = app
            .read_log("&instance=alpha&events=delivery")
            .await
            .iter()
            .filter(|e| e["id"].as_i64() < Some(marker) && e["data"]["status"] == "sent")
            .count();
        assert!(
            sent_before < MEMBERS as usize,
            "every message was sent before the command was answered"
        );
        // And the send completes.
        wait_for("every message of the send to be delivered", LONG, async || {
            let delivered = app
                .read_log("&instance=alpha&events=delivery")
                .await
                .iter()
                .filter(|e| e["data"]["status"] == "delivered")
                .count();
            if delivered == MEMBERS as usize {
                Ok(())
            } else {
                Err(format!("{delivered} delivered"))
            }
        })
        .await;
        app.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_can_require_the_admin_key() {
    let db = TestDb::new(Backend::Sqlite).await;
    let mut settings = test_settings(&db);
    settings.http.metrics_require_key = true;
    let app = TestApp::spawn_with(settings).await;
    let alpha_key = app.create_instance("alpha", quick_simulator()).await;
    let anonymous = app
        .http
        .get(app.url("/metrics"))
        .send()
        .await
        .expect("send");
    assert_eq!(anonymous.status(), 401);
    let instance = app
        .with_key(Method::GET, "/metrics", &alpha_key)
        .send()
        .await
        .expect("send");
    assert_eq!(instance.status(), 403);
    let admin = app
        .http
        .get(app.url("/metrics"))
        .header("Authorization", format!("Bearer {}", app.admin_key))
        .send()
        .await
        .expect("send");
    assert_eq!(admin.status(), 200);
    assert!(admin
        .text()
        .await
        .expect("text")
        .contains("switchboard_connections"));
    app.stop().await;
}

#[cfg(unix)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_embedded_database_is_readable_by_its_owner_only() {
    use std::os::unix::fs::PermissionsExt;

    let db = TestDb::new(Backend::Sqlite).await;
    let files = ["switchboard.db", "switchboard.db-wal", "switchboard.db-shm"];
    let modes = || {
        files
            .iter()
            .map(|file| db.dir.path().join(file))
            .filter(|path| path.exists())
            .map(|path| {
                (
                    path.clone(),
                    std::fs::metadata(&path).expect("stat").permissions().mode() & 0o777,
                )
            })
            .collect::<Vec<_>>()
    };
    let app = TestApp::spawn(&db).await;
    app.create_instance("alpha", quick_simulator()).await;
    let created = modes();
    assert!(
        created
            .iter()
            .any(|(path, _)| path.ends_with("switchboard.db")),
        "{created:?}"
    );
    assert!(
        created.iter().all(|(_, mode)| *mode == 0o600),
        "{created:?}"
    );
    app.stop().await;

    // A file an earlier version left readable by others is made private
    // when the server opens it.
    for (path, _) in modes() {
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    }
    let app = TestApp::spawn(&db).await;
    let reopened = modes();
    assert!(
        reopened.iter().all(|(_, mode)| *mode == 0o600),
        "{reopened:?}"
    );
    app.stop().await;
}

/// Runs the server binary on a fresh port with `env`, and returns what it
/// printed to stdout until it said where its REST API is (then stops it),
/// or its exit status and stderr when it refused to start.
async fn start_and_read_banner(
    data_dir: &std::path::Path,
    env: &[(&str, &str)],
) -> Result<String, (std::process::ExitStatus, String)> {
    use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};

    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_switchboard"));
    command
        .arg("run")
        .env("SWITCHBOARD__HTTP__ADDRESS", "127.0.0.1")
        .env("SWITCHBOARD__HTTP__PORT", "0")
        .env("SWITCHBOARD__DATA_DIR", data_dir)
        .env("SWITCHBOARD__AUTH__API_KEY", "")
        .env("RUST_LOG", "warn")
        .env_remove("DATABASE_URL")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true);
    for (name, value) in env {
        command.env(name, value);
    }
    let mut child = command.spawn().expect("start the server binary");
    let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
    let mut banner = String::new();
    let read = tokio::time::timeout(LONG, async {
        while let Some(line) = lines.next_line().await.expect("read stdout") {
            banner.push_str(&line);
            banner.push('\n');
            if line.contains("REST API:") {
                return true;
            }
        }
        false
    })
    .await
    .expect("the server printed its banner or exited");
    if read {
        child.kill().await.expect("stop the server");
        return Ok(banner);
    }
    let status = child.wait().await.expect("exit status");
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .expect("stderr")
        .read_to_string(&mut stderr)
        .await
        .expect("read stderr");
    Err((status, stderr))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_generated_admin_key_is_printed_once_with_where_it_is_stored_and_weak_keys_are_refused()
{
    let dir = tempfile::tempdir().expect("tempdir");
    let first = start_and_read_banner(dir.path(), &[])
        .await
        .expect("first start");
    let stored = dir.path().join("admin.key");
    let key = std::fs::read_to_string(&stored).expect("the key is stored");
    let key = key.trim();
    assert_eq!(key.len(), 64);
    assert_eq!(
        first.matches(key).count(),
        1,
        "shown exactly once:\n{first}"
    );
    assert!(first.contains(&stored.display().to_string()), "{first}");
    // A restart with the same data directory (a container's next start)
    // does not print it again, but says where it is.
    let second = start_and_read_banner(dir.path(), &[])
        .await
        .expect("second start");
    assert!(!second.contains(key), "printed again:\n{second}");
    assert!(second.contains(&stored.display().to_string()), "{second}");

    // A configured key or token secret that is too short stops the start
    // with an error that names the setting (and not the secret).
    let dir = tempfile::tempdir().expect("tempdir");
    for (setting, env) in [
        ("auth.api_key", "SWITCHBOARD__AUTH__API_KEY"),
        ("auth.jwt_secret", "SWITCHBOARD__AUTH__JWT_SECRET"),
    ] {
        let (status, stderr) = start_and_read_banner(dir.path(), &[(env, "letmein")])
            .await
            .expect_err("refused");
        assert!(!status.success());
        assert!(
            stderr.contains(&format!("{setting} is too weak")),
            "{stderr}"
        );
        assert!(!stderr.contains("letmein"), "{stderr}");
    }
}
