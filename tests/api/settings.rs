//! Per-instance settings (`settings/set`, `settings/find`): kept across
//! restarts, changed field by field; `rejectCall` with `msgCall` on a real
//! serial modem and on the virtual one; numbers read by the instance's
//! default region, short codes only where it allows them.

use std::time::Duration;

use reqwest::Method;
use serde_json::{json, Value};
use switchboard::tools::modem_sim::{Action, SimSettings};

use crate::helpers::*;
use crate::modem::{pty_modem, serial_driver, wait_log};
use crate::on_both_backends;

const LONG: Duration = Duration::from_secs(30);

async fn set(app: &TestApp, instance: &str, body: Value) -> (u16, Value) {
    let response = app
        .admin(Method::POST, &format!("/settings/set/{instance}"))
        .json(&body)
        .send()
        .await
        .expect("send");
    let status = response.status().as_u16();
    (status, response.json().await.expect("a JSON body"))
}

async fn send(app: &TestApp, instance: &str, number: &str) -> (u16, Value) {
    let response = app
        .admin(Method::POST, &format!("/message/sendText/{instance}"))
        .json(&json!({ "number": number, "text": "hello" }))
        .send()
        .await
        .expect("send");
    let status = response.status().as_u16();
    (status, response.json().await.expect("a JSON body"))
}

fn error_message(reply: &(u16, Value)) -> String {
    reply.1["error"]["message"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

on_both_backends! {
    async fn settings_change_field_by_field_and_survive_a_restart(backend: Backend) {
        let db = TestDb::new(backend).await;
        let app = TestApp::spawn(&db).await;
        app.create_instance("alpha", quick_simulator()).await;
        let found = app.get_json("/settings/find/alpha").await;
        assert_eq!(
            found,
            json!({ "settings": { "allowShortCodes": false, "defaultRegion": null,
                "instanceName": "alpha", "msgCall": null, "rejectCall": false } })
        );
        let (status, body) = set(&app, "alpha", json!({
            "rejectCall": true, "msgCall": "Texts only, please.", "defaultRegion": "gb",
            // Evolution's switches, as its clients send them.
            "groupsIgnore": true, "alwaysOnline": false, "readMessages": false,
            "readStatus": false, "syncFullHistory": false,
        }))
        .await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["settings"]["defaultRegion"], "GB");
        // Only what is named changes; null removes.
        let (status, body) = set(&app, "alpha", json!({ "allowShortCodes": true, "msgCall": null })).await;
        assert_eq!(status, 200, "{body}");
        let expected = json!({ "settings": { "allowShortCodes": true, "defaultRegion": "GB",
            "instanceName": "alpha", "msgCall": null, "rejectCall": true } });
        assert_eq!(body, expected);

        app.stop().await;
        let app = TestApp::spawn(&db).await;
        assert_eq!(app.get_json("/settings/find/alpha").await, expected);
        // Read after the restart too: a national number goes by GB.
        let (status, body) = send(&app, "alpha", "07911 123456").await;
        assert_eq!((status, &body["number"]), (201, &json!("+447911123456")), "{body}");

        for (body, message) in [
            (json!({ "defaultRegion": "XX" }), "'defaultRegion': 'XX' is not a region"),
            (json!({ "msgCall": "x".repeat(481) }), "'msgCall' is 481 characters; the limit is 480"),
            (json!({ "alwaysOnline": true }), "'alwaysOnline' cannot be true for an SMS instance"),
            (json!({ "readMessages": true }), "SMS has no read receipts"),
            (json!({ "rejectCall": "yes" }), "rejectCall"),
            (json!({ "throttle": 5 }), "throttle"),
            (json!({ "throttle": { "perMinute": 0 } }), "'throttle.perMinute' is 0; it must be 1 to 10000"),
            (json!({ "throttle": { "perHour": 5 } }), "unknown field"),
            (json!({ "speed": 5 }), "unknown field"),
        ] {
            let reply = set(&app, "alpha", body.clone()).await;
            assert_eq!(reply.0, 400, "{body}: {}", reply.1);
            assert!(error_message(&reply).contains(message), "{body}: {}", reply.1);
        }
        // A refused change changed nothing.
        assert_eq!(app.get_json("/settings/find/alpha").await, expected);
        let ghost = set(&app, "ghost", json!({ "rejectCall": true })).await;
        assert_eq!(ghost.0, 404);
        app.stop().await;
    }
}

on_both_backends! {
    async fn numbers_are_written_in_e164_by_the_default_region_and_short_codes_need_permission(backend: Backend) {
        let db = TestDb::new(backend).await;
        let app = TestApp::spawn(&db).await;
        app.create_instance("alpha", quick_simulator()).await;
        let (status, body) = send(&app, "alpha", " +1 (555) 123-4567 ").await;
        assert_eq!((status, &body["number"]), (201, &json!("+15551234567")), "{body}");

        // Without a region a national number has no country; with one it does.
        for (number, message) in [
            ("07911 123456", "'07911 123456' is not a phone number: it has no country code"),
            ("+999 123456", "it does not start with a country calling code"),
            ("+1 555 123", "numbers with country code +1 have 7 or 10 digits after it, this one has 6"),
            ("+1555abc", "use digits"),
            ("12345", "it looks like a short code, and this instance does not send to short codes"),
        ] {
            let reply = send(&app, "alpha", number).await;
            assert_eq!((reply.0, reply.1["error"]["code"].as_str()), (400, Some("BAD_REQUEST")), "{number}");
            assert!(error_message(&reply).contains(message), "{number}: {}", reply.1);
        }
        assert_eq!(set(&app, "alpha", json!({ "defaultRegion": "DE" })).await.0, 200);
        let (status, body) = send(&app, "alpha", "030 123456").await;
        assert_eq!((status, &body["number"]), (201, &json!("+4930123456")), "{body}");
        let wrong = send(&app, "alpha", "1").await;
        assert_eq!(wrong.0, 400, "{}", wrong.1);

        // Group members are read the same way.
        let group = app
            .admin(Method::POST, "/group/create/alpha")
            .json(&json!({ "subject": "Team", "participants": ["030 1234567", "+44 7911 123456"] }))
            .send()
            .await
            .expect("send");
        assert_eq!(group.status(), 201);
        let group: Value = group.json().await.expect("json");
        let members: Vec<&str> = group["participants"]
            .as_array()
            .expect("participants")
            .iter()
            .filter_map(|p| p["id"].as_str())
            .collect();
        assert_eq!(members, ["+447911123456", "+49301234567"]);

        // Short codes once allowed, and the text goes out to one.
        assert_eq!(set(&app, "alpha", json!({ "allowShortCodes": true })).await.0, 200);
        let (status, body) = send(&app, "alpha", "12345").await;
        assert_eq!((status, &body["number"]), (201, &json!("12345")), "{body}");
        let id = body["id"].as_str().expect("id").to_owned();
        wait_for("the short code text to be delivered", LONG, async || {
            app.read_log("&instance=alpha&events=delivery").await.iter().any(|e| {
                e["data"]["id"] == id.as_str() && e["data"]["status"] == "delivered" && e["data"]["to"] == "12345"
            })
        })
        .await;
        app.stop().await;
    }
}

on_both_backends! {
    async fn a_rejected_caller_on_a_serial_modem_gets_the_msg_call_text(backend: Backend) {
        let db = TestDb::new(backend).await;
        let sim = pty_modem(&db.dir, SimSettings::default()).await;
        let app = TestApp::spawn(&db).await;
        app.create_instance("usb", serial_driver(&sim)).await;
        wait_log(&app, "&instance=usb&events=connection", "the modem to connect", |log| {
            log.iter().any(|e| e["data"]["state"] == "connected")
        })
        .await;
        let (status, body) = set(&app, "usb", json!({
            "rejectCall": true, "msgCall": "Sorry, texts only.", "defaultRegion": "GB",
        }))
        .await;
        assert_eq!(status, 200, "{body}");

        // The caller's number as a UK network gives it, nationally.
        sim.act(Action::Call { from: "07911123456".into() }).await.expect("ring");
        let log = wait_log(&app, "&instance=usb&events=call,message,delivery", "the reply to be sent", |log| {
            log.iter().any(|e| e["event"] == "delivery" && e["data"]["status"] == "sent")
        })
        .await;
        let story: Vec<(Value, Value)> = log
            .iter()
            .map(|e| (e["event"].clone(), e["data"]["status"].clone()))
            .collect();
        assert_eq!(
            story[..4],
            [
                (json!("call"), json!("offer")),
                (json!("call"), json!("reject")),
                (json!("message"), Value::Null),
                (json!("delivery"), json!("queued")),
            ],
            "{log:#?}"
        );
        // The reject and the queued reply were committed together.
        assert_eq!(log[1]["id"].as_i64().map(|id| id + 1), log[2]["id"].as_i64());
        assert_eq!(log[2]["data"]["to"], "+447911123456");
        assert_eq!(log[2]["data"]["content"], "Sorry, texts only.");
        assert!(!sim.ringing());
        wait_for("the reply at the modem", LONG, async || {
            sim.submitted().iter().any(|s| s.to == "+447911123456" && s.text == "Sorry, texts only.")
        })
        .await;
        // Calling again at once is rejected, but texted only once in a while.
        sim.act(Action::Call { from: "07911123456".into() }).await.expect("ring");
        wait_log(&app, "&instance=usb&events=call", "the second reject", |log| log.len() >= 4).await;

        // Without rejectCall a call rings on; a call rejected through the
        // API gets the text too.
        assert_eq!(set(&app, "usb", json!({ "msgCall": null, "rejectCall": false })).await.0, 200);
        sim.act(Action::Call { from: "+15553334444".into() }).await.expect("ring");
        wait_log(&app, "&instance=usb&events=call", "the third offer", |log| log.len() >= 5).await;
        assert!(sim.ringing(), "not rejected without rejectCall");
        assert_eq!(set(&app, "usb", json!({ "msgCall": "Call you back!" })).await.0, 200);
        let rejected = app.admin(Method::POST, "/call/reject/usb").send().await.expect("send");
        assert_eq!(rejected.status(), 200);
        wait_for("the second reply at the modem", LONG, async || {
            sim.submitted().iter().any(|s| s.to == "+15553334444" && s.text == "Call you back!")
        })
        .await;
        // One text per caller: the repeated call got none.
        assert_eq!(sim.submitted().len(), 2, "{:?}", sim.submitted());
        app.stop().await;
        sim.stop().await;
    }
}

on_both_backends! {
    async fn a_call_the_virtual_modem_rejects_gets_the_msg_call_text(backend: Backend) {
        let db = TestDb::new(backend).await;
        let app = TestApp::spawn(&db).await;
        // The virtual modem's random traffic offers calls now and then.
        app.create_instance(
            "sim",
            json!({ "kind": "simulator", "rate": 40.0, "seed": 7, "sent_delay_ms": 20,
                    "delivered_delay_ms": 20, "reply_delay_ms": 20 }),
        )
        .await;
        assert_eq!(set(&app, "sim", json!({ "rejectCall": true, "msgCall": "Busy, text me." })).await.0, 200);
        let log = wait_log(&app, "&instance=sim&events=call,outgoing,delivery", "a rejected call's reply delivered", |log| {
            log.iter().filter(|e| e["event"] == "message").any(|m| {
                log.iter().any(|d| {
                    d["event"] == "delivery" && d["data"]["id"] == m["data"]["id"] && d["data"]["status"] == "delivered"
                })
            })
        })
        .await;
        let reply = log.iter().find(|e| e["event"] == "message").expect("a reply");
        assert_eq!(reply["data"]["content"], "Busy, text me.");
        // Right before it, in the same commit: the reject of that caller's call.
        let at = log.iter().position(|e| e["id"] == reply["id"]).expect("in the log");
        let reject = &log[at - 1];
        assert_eq!((reject["event"].as_str(), reject["data"]["status"].as_str()), (Some("call"), Some("reject")));
        assert_eq!(reject["data"]["from"], reply["data"]["to"]);
        assert_eq!(log[at - 2]["data"]["status"], "offer");
        app.stop().await;
    }
}
