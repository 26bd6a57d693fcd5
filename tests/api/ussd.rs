//! USSD: codes, menus, replies, cancellation and timeouts, through the real
//! serial path (the GSM driver against modem-sim on a pseudo-terminal) and
//! through the built-in virtual modem.

use reqwest::Method;
use serde_json::{json, Value};
use switchboard::tools::modem_sim::SimSettings;

use crate::helpers::*;
use crate::modem::{pty_modem, serial_driver, wait_log};
use crate::on_both_backends;

/// POSTs a USSD request; returns the status and the body.
async fn ussd(app: &TestApp, instance: &str, body: Value) -> (u16, Value) {
    let response = app
        .admin(Method::POST, &format!("/ussd/{instance}"))
        .json(&body)
        .send()
        .await
        .expect("send");
    let status = response.status().as_u16();
    (status, response.json().await.expect("a JSON body"))
}

async fn cancel(app: &TestApp, instance: &str) -> (u16, Value) {
    let response = app
        .admin(Method::DELETE, &format!("/ussd/{instance}"))
        .send()
        .await
        .expect("send");
    let status = response.status().as_u16();
    (status, response.json().await.expect("a JSON body"))
}

/// Asserts a 200 with this status and text; returns the session id.
fn answered(reply: &(u16, Value), status: &str, text: &str) -> String {
    assert_eq!(reply.0, 200, "{}", reply.1);
    let ussd = &reply.1["ussd"];
    assert_eq!(ussd["status"], status, "{ussd}");
    assert_eq!(ussd["text"], text, "{ussd}");
    ussd["id"].as_str().expect("a session id").to_owned()
}

fn refused(reply: &(u16, Value), status: u16, code: &str, message: &str) {
    assert_eq!(reply.0, status, "{}", reply.1);
    assert_eq!(reply.1["error"]["code"], code, "{}", reply.1);
    let got = reply.1["error"]["message"].as_str().unwrap_or("");
    assert!(got.contains(message), "{got}");
}

/// How often the driver has closed a session on the modem (`AT+CUSD=2`).
fn closes(sim: &switchboard::tools::modem_sim::SimHandle) -> usize {
    sim.commands().iter().filter(|c| *c == "AT+CUSD=2").count()
}

const MAIN_MENU: &str = "Main menu\n1 Balance\n2 Bundles\n0 Exit";
const BUNDLES: &str = "Bundles\n1 Day pass\n2 Week pass";
const BALANCE: &str = "Your balance is 12.50 EUR.";

on_both_backends! {
    async fn ussd_codes_menus_replies_cancel_and_timeout_go_through_a_serial_modem(backend: Backend) {
        let db = TestDb::new(backend).await;
        let sim = pty_modem(&db.dir, SimSettings::default()).await;
        let app = TestApp::spawn(&db).await;
        app.create_instance("usb", serial_driver(&sim)).await;
        wait_log(&app, "&instance=usb&events=connection", "the modem to connect", |log| {
            log.iter().any(|e| e["data"]["state"] == "connected")
        })
        .await;

        // A code answered at once (plain text), on the wire as AT+CUSD.
        let balance = ussd(&app, "usb", json!({ "code": "*100#" })).await;
        answered(&balance, "done", BALANCE);
        assert_eq!(balance.1["ussd"]["request"], "*100#");
        assert!(sim.commands().iter().any(|c| c == "AT+CUSD=1,\"*100#\",15"), "{:?}", sim.commands());

        // A two-level menu: a menu printed over several lines, then one in
        // UCS-2 hex, then a result in packed GSM-7 hex; one session.
        let menu = answered(&ussd(&app, "usb", json!({ "code": "*101#" })).await, "menu", MAIN_MENU);
        let bundles = answered(&ussd(&app, "usb", json!({ "reply": "2" })).await, "menu", BUNDLES);
        let done = answered(
            &ussd(&app, "usb", json!({ "reply": "1" })).await,
            "done",
            "Day pass activated.",
        );
        assert_eq!((&bundles, &done), (&menu, &menu));
        // The session is over: a reply has nothing to answer.
        refused(&ussd(&app, "usb", json!({ "reply": "1" })).await, 409, "CONFLICT", "no USSD menu is open");

        // Cancelled in the middle of the menu: AT+CUSD=2, and replies are refused.
        let open = answered(&ussd(&app, "usb", json!({ "code": "*101#" })).await, "menu", MAIN_MENU);
        let closed = closes(&sim);
        let cancelled = cancel(&app, "usb").await;
        assert_eq!(cancelled.0, 200, "{}", cancelled.1);
        assert_eq!(cancelled.1["ussd"]["status"], "cancelled");
        assert_eq!(cancelled.1["ussd"]["id"], open.as_str());
        assert_eq!(closes(&sim), closed + 1);
        refused(&ussd(&app, "usb", json!({ "reply": "2" })).await, 409, "CONFLICT", "no USSD menu is open");
        refused(&cancel(&app, "usb").await, 409, "CONFLICT", "no USSD session is open");

        // The network ends a session (one septet per octet in hex), and
        // says when it does not know a code.
        answered(&ussd(&app, "usb", json!({ "code": "*101#" })).await, "menu", MAIN_MENU);
        answered(&ussd(&app, "usb", json!({ "reply": "0" })).await, "terminated", "Goodbye.");
        let unknown = ussd(&app, "usb", json!({ "code": "*123#" })).await;
        assert_eq!(unknown.0, 200, "{}", unknown.1);
        assert_eq!(unknown.1["ussd"]["status"], "unsupported");

        // No answer in time: 504 with a clear code, and the session is closed.
        let before = closes(&sim);
        let silent = ussd(&app, "usb", json!({ "code": "*999#", "timeoutMs": 500 })).await;
        refused(&silent, 504, "GATEWAY_TIMEOUT", "no USSD answer within 500ms");
        assert_eq!(closes(&sim), before + 1);
        // The modem works on after it.
        answered(&ussd(&app, "usb", json!({ "code": "*100#" })).await, "done", BALANCE);

        // Every exchange is a `ussd` event, in order, with what the API answered.
        let log = wait_log(&app, "&instance=usb&events=ussd", "the ussd events", |log| log.len() >= 11).await;
        let seen: Vec<(Value, Value)> = log
            .iter()
            .map(|e| (e["data"]["request"].clone(), e["data"]["status"].clone()))
            .collect();
        let expected: Vec<(Value, Value)> = [
            (json!("*100#"), "done"),
            (json!("*101#"), "menu"),
            (json!("2"), "menu"),
            (json!("1"), "done"),
            (json!("*101#"), "menu"),
            (Value::Null, "cancelled"),
            (json!("*101#"), "menu"),
            (json!("0"), "terminated"),
            (json!("*123#"), "unsupported"),
            (json!("*999#"), "timeout"),
            (json!("*100#"), "done"),
        ]
        .into_iter()
        .map(|(request, status)| (request, json!(status)))
        .collect();
        assert_eq!(seen[..expected.len()], expected[..], "{log:#?}");
        assert!(log.iter().all(|e| e["event"] == "ussd" && e["instance"] == "usb"));
        assert_eq!(log[1]["data"]["text"], MAIN_MENU);
        app.stop().await;
        sim.stop().await;
    }
}

on_both_backends! {
    async fn the_virtual_modem_answers_ussd_with_the_same_menu(backend: Backend) {
        let db = TestDb::new(backend).await;
        let app = TestApp::spawn(&db).await;
        let key = app.create_instance("alpha", quick_simulator()).await;
        wait_log(&app, "&instance=alpha&events=connection", "the virtual modem to connect", |log| {
            log.iter().any(|e| e["data"]["state"] == "connected")
        })
        .await;
        answered(&ussd(&app, "alpha", json!({ "code": "*100#" })).await, "done", BALANCE);
        let menu = answered(&ussd(&app, "alpha", json!({ "code": "*101#" })).await, "menu", MAIN_MENU);
        // The instance's own key may use it too.
        let reply = app
            .with_key(Method::POST, "/ussd/alpha", &key)
            .json(&json!({ "reply": "2" }))
            .send()
            .await
            .expect("send");
        assert_eq!(reply.status(), 200);
        let reply: Value = reply.json().await.expect("json");
        assert_eq!(reply["ussd"]["id"], menu.as_str());
        assert_eq!(reply["ussd"]["text"], BUNDLES);
        let cancelled = cancel(&app, "alpha").await;
        assert_eq!(cancelled.1["ussd"]["status"], "cancelled", "{}", cancelled.1);
        refused(&ussd(&app, "alpha", json!({ "reply": "1" })).await, 409, "CONFLICT", "no USSD menu is open");
        let log = app.read_log("&instance=alpha&events=ussd").await;
        assert_eq!(log.len(), 4, "{log:#?}");
        app.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_ussd_requests_are_refused_saying_why_and_a_stopped_modem_is_a_conflict() {
    let db = TestDb::new(Backend::Sqlite).await;
    let app = TestApp::spawn(&db).await;
    app.create_instance("alpha", quick_simulator()).await;
    for (body, message) in [
        (json!({}), "either 'code'"),
        (json!({ "code": "*100#", "reply": "1" }), "either 'code'"),
        (
            json!({ "code": "*100#\",0\r" }),
            "'code' must be 1 to 40 characters",
        ),
        (json!({ "code": "" }), "'code' must be"),
        (json!({ "code": "*1".repeat(30) }), "'code' must be"),
        (json!({ "reply": "a\"b" }), "'reply' must be"),
        (
            json!({ "code": "*100#", "timeoutMs": 5 }),
            "'timeoutMs' must be between 100 and 120000",
        ),
        (json!({ "code": "*100#", "extra": 1 }), "unknown field"),
    ] {
        refused(
            &ussd(&app, "alpha", body.clone()).await,
            400,
            "BAD_REQUEST",
            message,
        );
    }
    refused(
        &ussd(&app, "ghost", json!({ "code": "*100#" })).await,
        404,
        "NOT_FOUND",
        "ghost",
    );
    let logout = app
        .admin(Method::DELETE, "/instance/logout/alpha")
        .send()
        .await
        .expect("send");
    assert_eq!(logout.status(), 200);
    refused(
        &ussd(&app, "alpha", json!({ "code": "*100#" })).await,
        409,
        "CONFLICT",
        "no running modem",
    );
    // Nothing was sent anywhere: no ussd event.
    assert!(app.read_log("&events=ussd").await.is_empty());
    app.stop().await;
}
