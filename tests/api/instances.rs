//! Instance lifecycle, supervision, groups, presence, heartbeats.

use std::time::Duration;

use chrono::DateTime;
use futures_util::StreamExt;
use reqwest::Method;
use serde_json::{json, Value};
use switchboard::config::InstanceSeed;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_tungstenite::tungstenite::Message;

use crate::helpers::*;
use crate::on_both_backends;

async fn state_of(app: &TestApp, name: &str) -> String {
    let body: Value = app
        .admin(Method::GET, &format!("/instance/connectionState/{name}"))
        .send()
        .await
        .expect("send")
        .json()
        .await
        .expect("json");
    body["instance"]["state"].as_str().unwrap_or("").to_owned()
}

async fn wait_state(app: &TestApp, name: &str, want: &str) {
    wait_for(&format!("{name} to be {want}"), WAIT, async || {
        let state = state_of(app, name).await;
        if state == want {
            Ok(())
        } else {
            Err(format!("state {state:?}"))
        }
    })
    .await
}

fn micros(event: &Value) -> i64 {
    DateTime::parse_from_rfc3339(event["timestamp"].as_str().expect("timestamp"))
        .expect("rfc3339")
        .timestamp_micros()
}

on_both_backends! {
    async fn logout_connect_restart_and_delete_do_what_they_say(backend: Backend) {
        let db = TestDb::new(backend).await;
        let app = TestApp::spawn(&db).await;
        let key = app.create_instance("alpha", quick_simulator()).await;
        wait_state(&app, "alpha", "open").await;
        let mut ws = app.ws(&format!("/ws/alpha?apikey={}&events=connection", app.admin_key)).await;

        let out: Value = app.admin(Method::DELETE, "/instance/logout/alpha").send().await.expect("send").json().await.expect("json");
        assert_eq!(out["instance"]["state"], "close");
        assert_eq!(state_of(&app, "alpha").await, "close");
        // A message sent while logged out waits in the outbox...
        let id = app.send_text("alpha", "+15550000001", "queued while away").await;
        let log = wait_for("the message to be queued", WAIT, async || {
            let log = app.read_log("&instance=alpha&events=delivery").await;
            log.iter().any(|e| e["data"]["id"] == id.as_str()).then_some(log)
        })
        .await;
        assert!(log.iter().all(|e| e["data"]["status"] == "queued"), "{log:?}");

        // ...and goes out once the instance is connected again.
        let back: Value = app.get_json("/instance/connect/alpha").await;
        assert_eq!(back["instance"]["state"], "open");
        wait_for("the queued message to be sent after connect", WAIT, async || {
            let log = app.read_log("&instance=alpha&events=delivery").await;
            log.iter().any(|e| e["data"]["id"] == id.as_str() && e["data"]["status"] == "delivered")
        })
        .await;
        // Nothing went out while it was logged out: between the logout and
        // the connect, the log holds only its "queued".
        let story = app.read_log("&instance=alpha&events=connection,delivery").await;
        let state_at = |from: usize, state: &str| {
            story[from..]
                .iter()
                .position(|e| e["event"] == "connection" && e["data"]["state"] == state)
                .map(|at| from + at)
                .unwrap_or_else(|| panic!("no {state} after event {from}: {story:?}"))
        };
        let logged_out = state_at(0, "disconnected");
        let connecting = state_at(logged_out, "connecting");
        let meanwhile: Vec<&Value> = story[logged_out..connecting]
            .iter()
            .filter(|e| e["event"] == "delivery")
            .collect();
        assert!(!meanwhile.is_empty(), "{story:?}");
        assert!(meanwhile.iter().all(|e| e["data"]["status"] == "queued"), "{story:?}");

        let restarted: Value = app.admin(Method::POST, "/instance/restart/alpha").send().await.expect("send").json().await.expect("json");
        assert_eq!(restarted["instance"]["state"], "open");
        let states: Vec<String> = ws
            .events_until(WAIT, |e| e.len() >= 6)
            .await
            .iter()
            .map(|e| e["data"]["state"].as_str().unwrap_or("").to_owned())
            .collect();
        // logout, connect, restart: each change is a connection event.
        assert_eq!(
            states,
            ["disconnected", "connecting", "connected", "disconnected", "connecting", "connected"]
        );

        let deleted = app.admin(Method::DELETE, "/instance/delete/alpha").send().await.expect("send");
        assert_eq!(deleted.status(), 200);
        let gone = app.admin(Method::GET, "/instance/connectionState/alpha").send().await.expect("send");
        assert_eq!(gone.status(), 404);
        // Its key stops working and its events are gone.
        let refused = app.with_key(Method::GET, "/instance/fetchInstances", &key).send().await.expect("send");
        assert_eq!(refused.status(), 401);
        assert!(app.read_log("&instance=alpha&events=message,delivery").await.is_empty());
        // The name can be used again.
        app.create_instance("alpha", quick_simulator()).await;
        ws.close().await;
        app.stop().await;
    }

    async fn a_failing_modem_actor_is_restarted_with_growing_backoff(backend: Backend) {
        let db = TestDb::new(backend).await;
        let mut settings = test_settings(&db);
        settings.modem.restart_backoff_initial_ms = 100;
        settings.modem.restart_backoff_max_ms = 800;
        let app = TestApp::spawn_with(settings).await;
        let mut ws = app.ws(&format!("/ws?apikey={}&events=connection", app.admin_key)).await;
        app.create_instance("flaky", json!({ "kind": "simulator", "fail_after_ms": 0 })).await;

        let events = ws
            .events_until(Duration::from_secs(20), |e| {
                e.iter().filter(|e| e["data"]["state"] == "disconnected").count() >= 5
            })
            .await;
        // Each failure is reported with its reason, then the actor comes back.
        let failures: Vec<&Value> = events.iter().filter(|e| e["data"]["state"] == "disconnected").collect();
        assert!(failures.iter().all(|e| e["data"]["reason"].as_str().unwrap_or("").contains("simulated modem failure")));
        // The pause between a failure and the next start doubles: 100, 200,
        // 400, 800 ms (lower bounds hold however loaded the machine is).
        let mut gaps = Vec::new();
        for (i, event) in events.iter().enumerate() {
            if event["data"]["state"] == "disconnected" {
                if let Some(next) = events[i + 1..].iter().find(|e| e["data"]["state"] == "connecting") {
                    gaps.push(micros(next) - micros(event));
                }
            }
        }
        assert!(gaps.len() >= 4, "{gaps:?}");
        for (gap, floor) in gaps.iter().zip([100_000, 200_000, 400_000, 800_000]) {
            assert!(*gap >= floor, "backoff gaps {gaps:?}");
        }
        assert!(gaps[3] > gaps[0], "backoff grows: {gaps:?}");
        // The server itself is unaffected.
        assert_eq!(app.http.get(app.url("/health")).send().await.expect("send").status(), 200);
        ws.close().await;
        app.stop().await;
    }

    async fn groups_broadcast_to_their_members_and_report_changes(backend: Backend) {
        let db = TestDb::new(backend).await;
        let app = TestApp::spawn(&db).await;
        app.create_instance("alpha", quick_simulator()).await;
        let mut ws = app.ws(&format!("/ws/alpha?apikey={}&events=group,presence", app.admin_key)).await;

        let created = app
            .admin(Method::POST, "/group/create/alpha")
            .json(&json!({ "subject": "Team", "participants": ["+15551110001", "+1 555 111 0002"] }))
            .send()
            .await
            .expect("send");
        assert_eq!(created.status(), 201);
        let group: Value = created.json().await.expect("json");
        let gid = group["id"].as_str().expect("id").to_owned();
        assert!(gid.ends_with("@g.us"));
        let updated: Value = app
            .admin(Method::POST, &format!("/group/updateParticipant/alpha?groupJid={gid}"))
            .json(&json!({ "action": "add", "participants": ["+15551110003"] }))
            .send()
            .await
            .expect("send")
            .json()
            .await
            .expect("json");
        assert_eq!(updated["size"], 3);
        let removed = app
            .admin(Method::POST, &format!("/group/updateParticipant/alpha?groupJid={gid}"))
            .json(&json!({ "action": "remove", "participants": ["+15551110001"] }))
            .send()
            .await
            .expect("send");
        assert_eq!(removed.status(), 200);
        let unknown = app
            .admin(Method::POST, "/group/updateParticipant/alpha?groupJid=nope@g.us")
            .json(&json!({ "action": "add", "participants": ["+15551110009"] }))
            .send()
            .await
            .expect("send");
        assert_eq!(unknown.status(), 404);

        let events = ws.events_until(WAIT, |e| e.len() == 3).await;
        let actions: Vec<&str> = events.iter().map(|e| e["data"]["action"].as_str().unwrap_or("")).collect();
        assert_eq!(actions, ["create", "participant_add", "participant_remove"]);
        assert_eq!(events[0]["data"]["metadata"]["participants"], json!(["+15551110001", "+15551110002"]));
        assert_eq!(events[1]["data"]["metadata"]["participants"], json!(["+15551110003"]));

        let listed: Value = app.get_json("/group/fetchAllGroups/alpha").await;
        let members: Vec<&str> = listed[0]["participants"].as_array().expect("participants").iter().map(|p| p["id"].as_str().unwrap_or("")).collect();
        assert_eq!(members, ["+15551110002", "+15551110003"]);

        // A send to the group is one message per member.
        let sent: Value = app
            .admin(Method::POST, "/message/sendText/alpha")
            .json(&json!({ "number": gid, "text": "hi team" }))
            .send()
            .await
            .expect("send")
            .json()
            .await
            .expect("json");
        assert_eq!(sent["messages"].as_array().expect("messages").len(), 2);
        let outgoing = app.read_log("&instance=alpha&events=outgoing").await;
        let mut to: Vec<&str> = outgoing.iter().map(|e| e["data"]["to"].as_str().unwrap_or("")).collect();
        to.sort();
        assert_eq!(to, ["+15551110002", "+15551110003"]);

        // Presence of the instance itself.
        let presence = app
            .admin(Method::POST, "/instance/setPresence/alpha")
            .json(&json!({ "presence": "composing" }))
            .send()
            .await
            .expect("send");
        assert_eq!(presence.status(), 200);
        let event = ws.event(WAIT).await;
        assert_eq!(event["event"], "presence");
        assert_eq!(event["data"]["presence"], "composing");
        assert_eq!(event["data"]["typing"], true);
        let bad = app
            .admin(Method::POST, "/instance/setPresence/alpha")
            .json(&json!({ "presence": "dancing" }))
            .send()
            .await
            .expect("send");
        assert_eq!(bad.status(), 400);
        ws.close().await;
        app.stop().await;
    }

    // An instance deleted and created again at once, several times: each
    // new one is driven. (On PostgreSQL the node kept the old one's lease
    // when the delete and the create fell between two renews, and the new
    // supervisor never got the permit to drive: it stayed closed.)
    async fn an_instance_deleted_and_created_again_at_once_starts_each_time(backend: Backend) {
        let db = TestDb::new(backend).await;
        let app = TestApp::spawn(&db).await;
        app.create_instance("alpha", quick_simulator()).await;
        wait_state(&app, "alpha", "open").await;
        for _ in 0..3 {
            let deleted = app
                .admin(Method::DELETE, "/instance/delete/alpha")
                .send()
                .await
                .expect("delete");
            assert_eq!(deleted.status(), 200);
            app.create_instance("alpha", quick_simulator()).await;
            // Driven: a text goes out.
            let id = app.send_text("alpha", "+15550000001", "after a re-create").await;
            wait_for("the new instance to send", WAIT, async || {
                let log = app.read_log("&instance=alpha&events=delivery").await;
                log.iter().any(|e| e["data"]["id"] == id.as_str() && e["data"]["status"] == "sent")
            })
            .await;
        }
        app.stop().await;
    }

    async fn configured_instances_are_created_at_start_and_kept(backend: Backend) {
        let db = TestDb::new(backend).await;
        let mut settings = test_settings(&db);
        settings.instances.push(InstanceSeed {
            name: "lobby".into(),
            driver: serde_json::from_value(json!({ "kind": "simulator", "number": "+15559990000" })).expect("driver"),
        });
        let app = TestApp::spawn_with(settings.clone()).await;
        wait_state(&app, "lobby", "open").await;
        app.stop().await;
        // A second start finds it and does not create it twice.
        let app = TestApp::spawn_with(settings).await;
        let list: Value = app.get_json("/instance/fetchInstances").await;
        assert_eq!(list.as_array().expect("list").len(), 1);
        let created = app.read_log("&events=instance").await;
        assert_eq!(created.len(), 1);
        app.stop().await;
    }

    async fn without_required_authentication_keyless_clients_see_everything(backend: Backend) {
        let db = TestDb::new(backend).await;
        let mut settings = test_settings(&db);
        settings.http.require_authentication = false;
        let app = TestApp::spawn_with(settings).await;
        app.create_instance("alpha", quick_simulator()).await;
        let mut ws = app.ws("/ws?events=outgoing").await;
        let sent = app
            .http
            .post(app.url("/message/sendText/alpha"))
            .json(&json!({ "number": "+15550000001", "text": "open house" }))
            .send()
            .await
            .expect("send");
        assert_eq!(sent.status(), 201);
        assert_eq!(ws.event(WAIT).await["data"]["content"], "open house");
        // A wrong key is still wrong.
        let mut bad = app.ws("/ws?apikey=wrong").await;
        assert_eq!(bad.json(WAIT).await["data"]["code"], "AUTH_FAILED");
        ws.close().await;
        app.stop().await;
    }

    async fn the_server_pings_and_closes_clients_that_stay_silent(backend: Backend) {
        let db = TestDb::new(backend).await;
        let mut settings = test_settings(&db);
        settings.http.ping_interval_secs = 1;
        settings.http.client_timeout_secs = 2;
        let app = TestApp::spawn_with(settings).await;
        // A client that never answers is closed with 4001 after the timeout,
        // having been pinged first. (It reads what comes, but to the server
        // that is no different from a client that does not read at all.)
        let mut raw = tokio::net::TcpStream::connect(("127.0.0.1", app.port)).await.expect("connect");
        let request = format!(
            "GET /ws?apikey={} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
            app.admin_key
        );
        raw.write_all(request.as_bytes()).await.expect("handshake");
        let frames = |bytes: &[u8]| -> Option<Vec<u8>> {
            bytes
                .windows(4)
                .position(|w| w == b"\r\n\r\n")
                .map(|i| bytes[i + 4..].to_vec())
        };
        // Everything up to the close frame's code, or the end of the stream.
        let mut bytes = Vec::new();
        let mut chunk = [0u8; 1024];
        tokio::time::timeout(WAIT, async {
            loop {
                let body = frames(&bytes).unwrap_or_default();
                if body.windows(4).any(|w| w[0] == 0x88) {
                    return;
                }
                match raw.read(&mut chunk).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => bytes.extend_from_slice(&chunk[..n]),
                }
            }
        })
        .await
        .unwrap_or_else(|_| panic!("the silent client was not closed within {WAIT:?}"));
        let body = frames(&bytes).expect("a handshake response");
        assert!(body.windows(2).any(|w| w == [0x89, 0x00]), "a ping frame was sent");
        let close = body.windows(2).position(|w| w[0] == 0x88).expect("a close frame");
        let code = u16::from_be_bytes([body[close + 2], body[close + 3]]);
        assert_eq!(code, 4001);

        // A client that answers pings stays connected past the timeout: it
        // answers five pings in a row (over four seconds, twice the timeout)
        // and meanwhile gets neither a close nor anything else.
        let mut alive = app.ws(&format!("/ws?apikey={}", app.admin_key)).await;
        for _ in 0..5 {
            let message = tokio::time::timeout(WAIT, alive.stream.next())
                .await
                .unwrap_or_else(|_| panic!("no ping within {WAIT:?}"))
                .expect("the connection stays open")
                .expect("a frame");
            assert!(matches!(message, Message::Ping(_)), "expected only pings, got {message:?}");
        }
        alive.send_json(json!({ "type": "ping" })).await;
        assert_eq!(alive.control(WAIT).await["type"], "pong");
        alive.close().await;
        app.stop().await;
    }
}
