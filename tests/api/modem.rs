//! Real-modem drivers against the simulated AT modem (`switchboard
//! modem-sim` in-process): the `serial` driver on a pseudo-terminal, the
//! `tcp` driver on a TCP port, the full server and a real database.

use std::{path::PathBuf, time::Duration};

use reqwest::Method;
use serde_json::{json, Value};
use switchboard::tools::modem_sim::{
    Action, Endpoint, InboundSms, Profile, SimHandle, SimSettings,
};

use crate::helpers::*;
use crate::on_both_backends;

/// Generous for a loaded 2-core machine; every wait ends as soon as the
/// condition holds.
const LONG: Duration = Duration::from_secs(30);

/// A simulated modem behind a pseudo-terminal, reachable through a stable
/// link in `dir` (so a simulated unplug and replug keeps the path).
pub async fn pty_modem(dir: &tempfile::TempDir, settings: SimSettings) -> SimHandle {
    let link = dir
        .path()
        .join(format!("modem-{}", uuid::Uuid::new_v4().simple()));
    SimHandle::start(settings, Endpoint::Pty { link: Some(link) })
        .await
        .expect("start the simulated modem")
}

pub async fn tcp_modem(settings: SimSettings) -> SimHandle {
    SimHandle::start(
        settings,
        Endpoint::Tcp("127.0.0.1:0".parse().expect("addr")),
    )
    .await
    .expect("start the simulated modem")
}

/// Fast polls and timeouts, so every behaviour shows within a second.
fn fast(mut driver: Value) -> Value {
    let fast = json!({
        "command_timeout_ms": 1000, "send_timeout_ms": 3000, "send_retry_ms": 100,
        "status_poll_ms": 300, "storage_poll_ms": 700, "multipart_timeout_ms": 60000
    });
    for (key, value) in fast.as_object().expect("object") {
        if driver.get(key).is_none() {
            driver[key] = value.clone();
        }
    }
    driver
}

pub fn serial_driver(sim: &SimHandle) -> Value {
    let port: PathBuf = sim.device_path().expect("a device").to_owned();
    fast(json!({ "kind": "serial", "port": port, "baud": 115200, "number": "+15550001000" }))
}

pub fn tcp_driver(sim: &SimHandle) -> Value {
    let address = sim.tcp_addr().expect("an address").to_string();
    fast(json!({ "kind": "tcp", "address": address, "number": "+15550001000" }))
}

fn with(mut driver: Value, extra: Value) -> Value {
    for (key, value) in extra.as_object().expect("object") {
        driver[key] = value.clone();
    }
    driver
}

/// Polls the log until `done` holds for the matching events.
pub async fn wait_log(
    app: &TestApp,
    query: &str,
    what: &str,
    done: impl Fn(&[Value]) -> bool,
) -> Vec<Value> {
    wait_for(what, LONG, async || {
        let log = app.read_log(query).await;
        if done(&log) {
            Ok(log)
        } else {
            Err(format!("log: {log:#?}"))
        }
    })
    .await
}

/// Waits for a condition on the simulated modem.
async fn wait_sim(what: &str, done: impl Fn() -> bool) {
    wait_for(what, LONG, async || done()).await
}

async fn wait_connected(app: &TestApp, name: &str) {
    wait_log(
        app,
        &format!("&instance={name}&events=connection"),
        "the modem to connect",
        |log| {
            log.iter()
                .any(|e| e["data"]["state"] == "connected" && e["data"]["info"]["signal"].is_i64())
        },
    )
    .await;
}

fn sms(from: &str, text: &str) -> InboundSms {
    InboundSms {
        from: from.into(),
        text: text.into(),
        direct: false,
        concat_16bit: false,
        reference: 0,
        only_parts: Vec::new(),
    }
}

/// 300 characters with emoji: UCS-2, five parts.
fn long_emoji_text() -> String {
    let mut text = String::new();
    while text.chars().count() < 290 {
        text.push_str("Grüße aus Berlin ");
    }
    let mut text: String = text.chars().take(290).collect();
    text.push_str("😀🎉🚀😀🎉🚀😀🎉🚀✅");
    assert_eq!(text.chars().count(), 300);
    text
}

/// Sends the long text and checks the whole event story of it.
async fn long_message_is_sent_and_delivered(app: &TestApp, name: &str, sim: &SimHandle) {
    let text = long_emoji_text();
    let mut ws = app
        .ws(&format!(
            "/ws/{name}?apikey={}&events=message,delivery",
            app.admin_key
        ))
        .await;
    let id = app.send_text(name, "+15557654321", &text).await;
    let events = ws
        .events_until(LONG, |events| {
            events
                .iter()
                .any(|e| e["data"]["status"] == "delivered" || e["data"]["status"] == "failed")
        })
        .await;
    let summary: Vec<(String, Value, Value, Value)> = events
        .iter()
        .map(|e| {
            (
                e["event"].as_str().unwrap_or("").to_owned(),
                e["data"]["status"].clone(),
                e["data"]["partsDone"].clone(),
                e["data"]["parts"].clone(),
            )
        })
        .collect();
    assert_eq!(
        summary,
        vec![
            ("message".into(), Value::Null, Value::Null, json!(5)),
            ("delivery".into(), json!("queued"), Value::Null, Value::Null),
            ("delivery".into(), json!("sent"), json!(1), json!(5)),
            ("delivery".into(), json!("sent"), json!(2), json!(5)),
            ("delivery".into(), json!("sent"), json!(3), json!(5)),
            ("delivery".into(), json!("sent"), json!(4), json!(5)),
            ("delivery".into(), json!("sent"), json!(5), json!(5)),
            ("delivery".into(), json!("delivered"), json!(5), json!(5)),
        ],
        "{events:#?}"
    );
    assert!(events.iter().all(|e| e["data"]["id"] == id.as_str()));
    assert_eq!(events[0]["data"]["content"], text.as_str());
    assert_eq!(events[0]["data"]["from"], "+15550001000");
    // The modem got five parts of one concatenated message, each asking
    // for a report, that together are the text.
    let sent = sim.submitted();
    assert_eq!(sent.len(), 5);
    assert!(sent
        .iter()
        .all(|s| s.to == "+15557654321" && s.status_report));
    let reference = sent[0].concat.expect("concatenated").0;
    let joined: String = sent
        .iter()
        .enumerate()
        .map(|(i, s)| {
            assert_eq!(s.concat, Some((reference, 5, i as u8 + 1)));
            s.text.as_str()
        })
        .collect();
    assert_eq!(joined, text);
    ws.close().await;
}

on_both_backends! {
    async fn a_serial_instance_on_a_pseudo_terminal_sends_a_long_emoji_message_until_every_part_is_delivered(backend: Backend) {
        let db = TestDb::new(backend).await;
        let sim = pty_modem(&db.dir, SimSettings::default()).await;
        let app = TestApp::spawn(&db).await;
        app.create_instance("usb", serial_driver(&sim)).await;
        wait_connected(&app, "usb").await;
        long_message_is_sent_and_delivered(&app, "usb", &sim).await;
        app.stop().await;
        sim.stop().await;
    }

    async fn an_inbound_multipart_message_survives_a_server_restart_between_its_parts(backend: Backend) {
        let db = TestDb::new(backend).await;
        let sim = pty_modem(&db.dir, SimSettings::default()).await;
        let text: String = "Привет, это длинное сообщение! ".repeat(6);
        let app = TestApp::spawn(&db).await;
        app.create_instance("usb", serial_driver(&sim)).await;
        wait_connected(&app, "usb").await;
        let first = InboundSms { reference: 4242, only_parts: vec![1], ..sms("+15551230000", &text) };
        sim.act(Action::Sms(first)).await.expect("part 1");
        // Part 1 is committed (then deleted from the modem) ...
        wait_sim("part 1 to leave modem storage", || {
            sim.commands().iter().any(|c| c.starts_with("AT+CMGD="))
        })
        .await;
        app.stop().await;
        // ... parts 2 and 3 arrive while the server is down ...
        let rest = InboundSms { reference: 4242, only_parts: vec![2, 3], ..sms("+15551230000", &text) };
        sim.act(Action::Sms(rest)).await.expect("parts 2 and 3");
        assert_eq!(sim.storage().len(), 2);
        // ... and after the restart they complete it: one message.
        let app = TestApp::spawn(&db).await;
        let log = wait_log(&app, "&instance=usb&events=incoming", "the message", |log| !log.is_empty()).await;
        assert_eq!(log.len(), 1, "{log:#?}");
        assert_eq!(log[0]["data"]["content"], text.as_str());
        assert_eq!(log[0]["data"]["parts"], 3);
        assert_eq!(log[0]["data"]["from"], "+15551230000");
        wait_sim("storage to be emptied", || sim.storage().is_empty()).await;
        // Nothing else trickles in (no duplicate, no leftover fragment).
        let again = app.read_log("&instance=usb&events=incoming").await;
        assert_eq!(again.len(), 1);
        app.stop().await;
        sim.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tcp_instance_sends_a_long_emoji_message_until_every_part_is_delivered() {
    let db = TestDb::new(Backend::Postgres).await;
    let sim = tcp_modem(SimSettings::default()).await;
    let app = TestApp::spawn(&db).await;
    app.create_instance("bank", tcp_driver(&sim)).await;
    wait_connected(&app, "bank").await;
    long_message_is_sent_and_delivered(&app, "bank", &sim).await;
    app.stop().await;
    sim.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_inbound_three_part_ucs2_message_arrives_as_one_message_event() {
    let db = TestDb::new(Backend::Sqlite).await;
    let sim = tcp_modem(SimSettings::default()).await;
    let app = TestApp::spawn(&db).await;
    app.create_instance("bank", tcp_driver(&sim)).await;
    wait_connected(&app, "bank").await;
    let text = "Ünïcödé ✓ 漢字 — ".repeat(12);
    sim.send_sms("+447700900123", &text).await.expect("sms");
    let log = wait_log(
        &app,
        "&instance=bank&events=incoming",
        "the message",
        |log| !log.is_empty(),
    )
    .await;
    assert_eq!(log.len(), 1);
    assert_eq!(log[0]["data"]["content"], text.as_str());
    assert_eq!(log[0]["data"]["parts"], 3);
    assert_eq!(log[0]["data"]["to"], "+15550001000");
    wait_sim("storage to be emptied", || sim.storage().is_empty()).await;
    app.stop().await;
    sim.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_routed_straight_to_the_host_is_committed_then_acknowledged() {
    let db = TestDb::new(Backend::Sqlite).await;
    let sim = tcp_modem(SimSettings {
        ack_required: true,
        ..SimSettings::default()
    })
    .await;
    let app = TestApp::spawn(&db).await;
    app.create_instance("bank", tcp_driver(&sim)).await;
    wait_connected(&app, "bank").await;
    assert!(!sim.commands().iter().any(|c| c == "AT+CNMA"));
    let direct = InboundSms {
        direct: true,
        ..sms("+447700900124", "flash")
    };
    sim.act(Action::Sms(direct)).await.expect("direct");
    wait_log(
        &app,
        "&instance=bank&events=incoming",
        "the direct message",
        |log| log.iter().any(|e| e["data"]["content"] == "flash"),
    )
    .await;
    wait_sim("the acknowledgement", || {
        sim.commands().iter().any(|c| c == "AT+CNMA")
    })
    .await;
    assert!(
        sim.storage().is_empty(),
        "a direct message never touches storage"
    );
    app.stop().await;
    sim.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_sms_that_arrives_while_postgres_is_down_stays_in_the_modem_and_is_delivered_after() {
    let db = TestDb::behind_proxy().await;
    let sim = tcp_modem(SimSettings::default()).await;
    let app = TestApp::spawn(&db).await;
    app.create_instance("bank", tcp_driver(&sim)).await;
    wait_connected(&app, "bank").await;

    db.proxy().cut();
    sim.send_sms("+15551112222", "while the database is down")
        .await
        .expect("sms");
    // The driver read it, could not commit it, and listed storage again
    // later without ever deleting it.
    wait_sim(
        "the driver to read the message and come back for it",
        || {
            let commands = sim.commands();
            let read = commands.iter().rposition(|c| c.starts_with("AT+CMGR="));
            read.is_some_and(|at| commands[at..].iter().any(|c| c == "AT+CMGL=4"))
        },
    )
    .await;
    assert!(
        !sim.commands().iter().any(|c| c.starts_with("AT+CMGD=")),
        "deleted before commit"
    );
    assert_eq!(sim.storage().len(), 1, "the message stays in the modem");

    db.proxy().restore();
    let log = wait_log(
        &app,
        "&instance=bank&events=incoming",
        "the message",
        |log| !log.is_empty(),
    )
    .await;
    assert_eq!(log.len(), 1);
    assert_eq!(log[0]["data"]["content"], "while the database is down");
    wait_sim("storage to be emptied", || sim.storage().is_empty()).await;
    app.stop().await;
    sim.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_direct_report_that_arrives_while_postgres_is_down_survives_a_restart_before_it_is_back()
{
    let db = TestDb::behind_proxy().await;
    // A modem that routes reports straight to the host (+CDS) and wants
    // each acknowledged: once it is, the network forgets the report.
    let sim = tcp_modem(SimSettings {
        profile: Profile::DirectReports,
        ack_required: true,
        report_delay: Duration::from_millis(2000),
        ..SimSettings::default()
    })
    .await;
    let app = TestApp::spawn(&db).await;
    app.create_instance("bank", tcp_driver(&sim)).await;
    wait_connected(&app, "bank").await;
    let id = app.send_text("bank", "+15557654321", "report me").await;
    wait_log(
        &app,
        "&instance=bank&events=delivery",
        "the part to be sent",
        |log| {
            log.iter()
                .any(|e| e["data"]["id"] == id.as_str() && e["data"]["status"] == "sent")
        },
    )
    .await;

    // The database goes away before the report comes.
    db.proxy().cut();
    assert!(
        !sim.commands().iter().any(|c| c == "AT+CNMA"),
        "the report came before the outage; the test needs it during"
    );
    // The driver acknowledges the report only once it is safe: spooled.
    wait_sim("the report to be acknowledged", || {
        sim.commands().iter().any(|c| c == "AT+CNMA")
    })
    .await;
    // The server restarts while the database is still down, so nothing
    // held in memory survives...
    app.stop().await;
    db.proxy().restore();
    // ...and the report is still committed once it is back.
    let app = TestApp::spawn(&db).await;
    wait_log(
        &app,
        "&instance=bank&events=delivery",
        "the delivery",
        |log| {
            log.iter()
                .any(|e| e["data"]["id"] == id.as_str() && e["data"]["status"] == "delivered")
        },
    )
    .await;
    app.stop().await;
    sim.stop().await;
}

/// Splits `text` into SMS-DELIVER parts with python-gsmmodem's encoder
/// (`tests/support/split_deliver.py`), which cuts by UTF-16 code units and
/// counts a literal ESC as a septet: a sender that splits characters.
fn split_by_library(sender: &str, text: &str, reference: u8) -> Vec<String> {
    use std::io::Write;

    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/support/split_deliver.py"
    );
    let mut child = std::process::Command::new("python3")
        .arg(script)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("python3 runs (scripts/test.sh installs it with python-gsmmodem-new)");
    let request = json!({ "sender": sender, "text": text, "reference": reference });
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(request.to_string().as_bytes())
        .expect("write the request");
    let output = child.wait_with_output().expect("the script ends");
    assert!(
        output.status.success(),
        "split_deliver.py failed (is python-gsmmodem-new installed? scripts/test.sh installs it): {}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).expect("a JSON list of PDUs")
}

on_both_backends! {
    async fn a_long_message_whose_sender_split_a_character_between_its_parts_arrives_whole(backend: Backend) {
        let db = TestDb::new(backend).await;
        let sim = tcp_modem(SimSettings::default()).await;
        let app = TestApp::spawn(&db).await;
        app.create_instance("bank", tcp_driver(&sim)).await;
        wait_connected(&app, "bank").await;

        // UCS-2: 67 code units fill a part, and the 67th is the first half
        // of the emoji. GSM-7: 153 septets fill a part, and the 153rd is
        // the escape of the euro sign (which TS 23.040 forbids, and which
        // senders do all the same).
        let emoji = format!("{}😀{}", "a".repeat(66), "b".repeat(10));
        let euro = format!("{}€ five euros", "x".repeat(152));
        let emoji_parts = split_by_library("+15551234567", &emoji, 9);
        let euro_parts = split_by_library("+15557654321", &euro.replace('€', "\u{1b}e"), 10);
        assert_eq!((emoji_parts.len(), euro_parts.len()), (2, 2));
        // The library did cut the characters: each part alone decodes badly.
        for (parts, whole) in [(&emoji_parts, &emoji), (&euro_parts, &euro)] {
            let alone: String = parts
                .iter()
                .map(|hex| match switchboard::modem::pdu::decode(hex).expect("a PDU") {
                    switchboard::modem::pdu::Pdu::Deliver(deliver) => deliver.text,
                    other => panic!("not a DELIVER: {other:?}"),
                })
                .collect();
            assert_ne!(&alone, whole);
        }

        // The first parts arrive and are committed...
        sim.act(Action::Pdus { pdus: vec![emoji_parts[0].clone(), euro_parts[0].clone()], direct: false })
            .await
            .expect("first parts");
        wait_sim("the first parts to be committed and deleted", || sim.storage().is_empty()).await;
        // ...the server restarts between the parts (they wait in the
        // database), and the last parts complete both messages.
        app.stop().await;
        let app = TestApp::spawn(&db).await;
        sim.act(Action::Pdus { pdus: vec![emoji_parts[1].clone(), euro_parts[1].clone()], direct: false })
            .await
            .expect("last parts");
        let log = wait_log(&app, "&instance=bank&events=incoming", "both messages", |log| log.len() >= 2).await;
        let mut contents: Vec<&str> = log.iter().map(|e| e["data"]["content"].as_str().unwrap_or("")).collect();
        contents.sort();
        let mut expected = [emoji.as_str(), euro.as_str()];
        expected.sort();
        assert_eq!(contents, expected);
        assert!(log.iter().all(|e| e["data"]["parts"] == 2), "{log:?}");
        app.stop().await;
        sim.stop().await;
    }
}

on_both_backends! {
    // A long UCS-2 message with U+0000 in a part (a character PostgreSQL
    // holds in no text column) arrives whole and holds up nothing behind it:
    // the part waiting for the rest is stored, not retried forever.
    async fn a_long_message_holding_u0000_arrives_whole_and_holds_up_nothing(backend: Backend) {
        let db = TestDb::new(backend).await;
        let sim = tcp_modem(SimSettings::default()).await;
        let app = TestApp::spawn(&db).await;
        app.create_instance("bank", tcp_driver(&sim)).await;
        wait_connected(&app, "bank").await;

        let odd = format!("{}\u{0}{}", "ж".repeat(40), "ж".repeat(60));
        let parts = split_by_library("+15551234567", &odd, 11);
        assert_eq!(parts.len(), 2);
        // The part holding U+0000 comes alone, so it must be stored to wait
        // for the rest.
        sim.act(Action::Pdus { pdus: vec![parts[0].clone()], direct: false })
            .await
            .expect("first part");
        wait_sim("the first part to be committed and deleted", || sim.storage().is_empty()).await;
        let mut rest = vec![parts[1].clone()];
        rest.extend(split_by_library("+15557654321", "after it", 12));
        sim.act(Action::Pdus { pdus: rest, direct: false }).await.expect("the rest");
        let log = wait_log(&app, "&instance=bank&events=incoming", "both messages", |log| log.len() >= 2).await;
        let mut contents: Vec<&str> = log.iter().map(|e| e["data"]["content"].as_str().unwrap_or("")).collect();
        contents.sort();
        assert_eq!(contents, ["after it", odd.as_str()]);
        wait_sim("every PDU to be deleted from the modem", || sim.storage().is_empty()).await;
        app.stop().await;
        sim.stop().await;
    }
}

/// The connection events of an instance, oldest first.
async fn connection_log(app: &TestApp, name: &str) -> Vec<Value> {
    app.read_log(&format!("&instance={name}&events=connection"))
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_modem_is_reported_reset_and_reinitialized_and_loses_nothing() {
    let db = TestDb::new(Backend::Sqlite).await;
    let sim = tcp_modem(SimSettings::default()).await;
    let app = TestApp::spawn(&db).await;
    app.create_instance("bank", tcp_driver(&sim)).await;
    wait_connected(&app, "bank").await;
    let before = connection_log(&app, "bank").await.len();

    sim.act(Action::Silent { ms: 2500 }).await.expect("silent");
    // Arrives while the modem says nothing: stored, its notice lost.
    sim.send_sms("+15551112222", "during the silence")
        .await
        .expect("sms");
    let log = wait_log(
        &app,
        "&instance=bank&events=connection",
        "the failure and the recovery",
        |log| {
            let after = &log[before.min(log.len())..];
            let failed = after.iter().position(|e| {
                e["data"]["state"] == "disconnected"
                    && e["data"]["reason"]
                        .as_str()
                        .unwrap_or("")
                        .contains("stopped answering")
            });
            failed.is_some_and(|at| {
                after[at..]
                    .iter()
                    .any(|e| e["data"]["state"] == "connected")
            })
        },
    )
    .await;
    assert!(log.len() > before);
    assert!(
        sim.commands().iter().any(|c| c == "AT+CFUN=1,1"),
        "a reset was asked for"
    );
    wait_log(
        &app,
        "&instance=bank&events=incoming",
        "the message from the silence",
        |log| {
            log.iter()
                .any(|e| e["data"]["content"] == "during the silence")
        },
    )
    .await;
    app.stop().await;
    sim.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unplugged_serial_port_is_reported_and_reopened_and_queued_messages_go_out() {
    let db = TestDb::new(Backend::Postgres).await;
    let sim = pty_modem(&db.dir, SimSettings::default()).await;
    let app = TestApp::spawn(&db).await;
    app.create_instance("usb", serial_driver(&sim)).await;
    wait_connected(&app, "usb").await;

    sim.act(Action::DropPort { ms: 1500 })
        .await
        .expect("unplug");
    wait_log(
        &app,
        "&instance=usb&events=connection",
        "the unplug to be reported",
        |log| log.iter().any(|e| e["data"]["state"] == "disconnected"),
    )
    .await;
    // Accepted while the modem is gone; sent once it is back.
    let id = app
        .send_text("usb", "+15557654321", "sent after the replug")
        .await;
    let log = wait_log(
        &app,
        "&instance=usb&events=delivery",
        "the delivery",
        |log| {
            log.iter()
                .any(|e| e["data"]["id"] == id.as_str() && e["data"]["status"] == "delivered")
        },
    )
    .await;
    assert!(log.iter().all(|e| e["data"]["status"] != "failed"));
    let states: Vec<String> = connection_log(&app, "usb")
        .await
        .iter()
        .map(|e| e["data"]["state"].as_str().unwrap_or("").to_owned())
        .collect();
    let gone = states
        .iter()
        .position(|s| s == "disconnected")
        .expect("reported");
    assert!(
        states[gone..].iter().any(|s| s == "connected"),
        "{states:?}"
    );
    app.stop().await;
    sim.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_on_the_line_is_skipped_without_losing_the_connection_or_messages() {
    let db = TestDb::new(Backend::Sqlite).await;
    let sim = tcp_modem(SimSettings::default()).await;
    let app = TestApp::spawn(&db).await;
    app.create_instance("bank", tcp_driver(&sim)).await;
    wait_connected(&app, "bank").await;
    for _ in 0..3 {
        sim.act(Action::Garbage { text: None })
            .await
            .expect("garbage");
    }
    sim.send_sms("+15551112222", "after the noise")
        .await
        .expect("sms");
    sim.act(Action::Garbage {
        text: Some("\u{1}\u{2}OK\r\nERROR\r\n+CMTI: \"SM\",99\r\n".into()),
    })
    .await
    .expect("garbage");
    let id = app
        .send_text("bank", "+15557654321", "through the noise")
        .await;
    wait_log(
        &app,
        "&instance=bank&events=incoming",
        "the inbound message",
        |log| {
            log.iter()
                .any(|e| e["data"]["content"] == "after the noise")
        },
    )
    .await;
    wait_log(
        &app,
        "&instance=bank&events=delivery",
        "the delivery",
        |log| {
            log.iter()
                .any(|e| e["data"]["id"] == id.as_str() && e["data"]["status"] == "delivered")
        },
    )
    .await;
    let states: Vec<Value> = connection_log(&app, "bank")
        .await
        .iter()
        .map(|e| e["data"]["state"].clone())
        .collect();
    assert!(!states.contains(&json!("disconnected")), "{states:?}");
    // Noise that looked like a +CMT or +CDS line became nothing.
    let incoming = app.read_log("&instance=bank&events=incoming").await;
    assert_eq!(incoming.len(), 1, "{incoming:#?}");
    app.stop().await;
    sim.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cms_error_is_retried_and_a_lasting_one_fails_the_message_with_a_readable_reason() {
    let db = TestDb::new(Backend::Postgres).await;
    let sim = tcp_modem(SimSettings::default()).await;
    let app = TestApp::spawn(&db).await;
    app.create_instance("bank", tcp_driver(&sim)).await;
    wait_connected(&app, "bank").await;

    sim.act(Action::CmsError {
        code: 42,
        count: 1,
        skip: 0,
    })
    .await
    .expect("fault");
    let retried = app
        .send_text("bank", "+15557654321", "second time lucky")
        .await;
    wait_log(
        &app,
        "&instance=bank&events=delivery",
        "the retried message",
        |log| {
            log.iter()
                .any(|e| e["data"]["id"] == retried.as_str() && e["data"]["status"] == "delivered")
        },
    )
    .await;

    sim.act(Action::CmsError {
        code: 500,
        count: 10,
        skip: 0,
    })
    .await
    .expect("fault");
    let doomed = app
        .send_text("bank", "+15557654321", "never goes out")
        .await;
    let log = wait_log(
        &app,
        "&instance=bank&events=delivery",
        "the failure",
        |log| {
            log.iter()
                .any(|e| e["data"]["id"] == doomed.as_str() && e["data"]["status"] == "failed")
        },
    )
    .await;
    let failed = log
        .iter()
        .find(|e| e["data"]["id"] == doomed.as_str() && e["data"]["status"] == "failed")
        .expect("failed");
    assert_eq!(failed["data"]["error"], "+CMS ERROR: 500 (unknown error)");
    // Three tries (send_attempts), then no more.
    assert_eq!(
        sim.submitted()
            .iter()
            .filter(|s| s.text == "never goes out")
            .count(),
        0
    );
    let tries = sim
        .commands()
        .iter()
        .filter(|c| c.starts_with("AT+CMGS="))
        .count();
    assert_eq!(
        tries,
        2 + 3,
        "1 failed + 1 good try of the first, 3 of the second"
    );
    app.stop().await;
    sim.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_modem_storage_is_reported_and_drained_and_messages_waiting_in_the_network_follow() {
    let db = TestDb::new(Backend::Sqlite).await;
    let sim = tcp_modem(SimSettings {
        capacity: 2,
        ..SimSettings::default()
    })
    .await;
    let app = TestApp::spawn(&db).await;
    app.create_instance("bank", tcp_driver(&sim)).await;
    wait_connected(&app, "bank").await;
    let response = app
        .admin(Method::DELETE, "/instance/logout/bank")
        .send()
        .await
        .expect("send");
    assert_eq!(response.status(), 200);
    // While nobody reads the modem, four messages come: two fill the SIM,
    // two wait in the network.
    for n in 0..4 {
        sim.send_sms("+15551112222", &format!("message {n}"))
            .await
            .expect("sms");
    }
    assert_eq!((sim.storage().len(), sim.network_queue_len()), (2, 2));
    let response = app
        .admin(Method::GET, "/instance/connect/bank")
        .send()
        .await
        .expect("send");
    assert_eq!(response.status(), 200);
    let log = wait_log(
        &app,
        "&instance=bank&events=incoming",
        "all four messages",
        |log| log.len() >= 4,
    )
    .await;
    let mut contents: Vec<&str> = log
        .iter()
        .map(|e| e["data"]["content"].as_str().unwrap_or(""))
        .collect();
    contents.sort();
    assert_eq!(
        contents,
        ["message 0", "message 1", "message 2", "message 3"]
    );
    assert!(connection_log(&app, "bank")
        .await
        .iter()
        .any(|e| e["data"]["reason"]
            .as_str()
            .unwrap_or("")
            .contains("storage is full")));
    wait_sim("storage and network to be empty", || {
        sim.storage().is_empty() && sim.network_queue_len() == 0
    })
    .await;
    app.stop().await;
    sim.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_vendor_profile_gets_a_report_routing_it_accepts_and_still_reports_delivery() {
    let db = TestDb::new(Backend::Sqlite).await;
    let app = TestApp::spawn(&db).await;
    // An A76xx refuses direct reports (AT+CNMI=2,2,0,1,0 and its kin) and
    // takes the stored ones the driver asks for first; a modem that cannot
    // store reports gets direct ones (+CDS) as the fallback.
    for (name, profile, tried) in [
        ("a76", Profile::A76xx, vec!["AT+CNMI=2,1,0,2,0"]),
        (
            "basic",
            Profile::DirectReports,
            vec!["AT+CNMI=2,1,0,2,0", "AT+CNMI=2,1,0,1,0"],
        ),
    ] {
        let sim = tcp_modem(SimSettings {
            profile,
            ..SimSettings::default()
        })
        .await;
        app.create_instance(name, tcp_driver(&sim)).await;
        wait_connected(&app, name).await;
        let cnmi: Vec<String> = sim
            .commands()
            .into_iter()
            .filter(|c| c.starts_with("AT+CNMI="))
            .collect();
        assert_eq!(cnmi, tried, "{name}");
        let id = app.send_text(name, "+15557654321", "is it there yet").await;
        wait_log(
            &app,
            &format!("&instance={name}&events=delivery"),
            "the delivery",
            |log| {
                log.iter()
                    .any(|e| e["data"]["id"] == id.as_str() && e["data"]["status"] == "delivered")
            },
        )
        .await;
        wait_sim("reports to leave storage", || sim.storage().is_empty()).await;

        // A report that says the network gave up fails the message.
        sim.act(Action::ReportStatus { status: 0x41 })
            .await
            .expect("status");
        let id = app.send_text(name, "+15557654321", "undeliverable").await;
        let log = wait_log(
            &app,
            &format!("&instance={name}&events=delivery"),
            "the failure",
            |log| {
                log.iter()
                    .any(|e| e["data"]["id"] == id.as_str() && e["data"]["status"] == "failed")
            },
        )
        .await;
        let failed = log
            .iter()
            .find(|e| e["data"]["id"] == id.as_str() && e["data"]["status"] == "failed")
            .expect("failed");
        assert!(
            failed["data"]["error"]
                .as_str()
                .unwrap_or("")
                .contains("TP-ST 0x41"),
            "{failed}"
        );
        assert!(!log
            .iter()
            .any(|e| e["data"]["id"] == id.as_str() && e["data"]["status"] == "delivered"));
        sim.stop().await;
    }
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ringing_call_is_offered_rejected_through_the_api_and_a_hung_up_one_ends() {
    let db = TestDb::new(Backend::Sqlite).await;
    let sim = tcp_modem(SimSettings::default()).await;
    let app = TestApp::spawn(&db).await;
    let key = app.create_instance("bank", tcp_driver(&sim)).await;
    wait_connected(&app, "bank").await;

    // No call yet: nothing to reject.
    let response = app
        .admin(Method::POST, "/call/reject/bank")
        .send()
        .await
        .expect("send");
    assert_eq!(response.status(), 404);

    sim.act(Action::Call {
        from: "+15553334444".into(),
    })
    .await
    .expect("ring");
    let log = wait_log(&app, "&instance=bank&events=call", "the offer", |log| {
        !log.is_empty()
    })
    .await;
    assert_eq!(log[0]["data"]["status"], "offer");
    assert_eq!(log[0]["data"]["from"], "+15553334444");
    let call_id = log[0]["data"]["id"].as_str().expect("id").to_owned();
    // The instance's own key may reject its call.
    let response = app
        .with_key(Method::POST, "/call/reject/bank", &key)
        .json(&json!({ "callId": call_id }))
        .send()
        .await
        .expect("send");
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.expect("json");
    assert_eq!(body["callId"], call_id.as_str());
    assert!(!sim.ringing());
    let log = wait_log(&app, "&instance=bank&events=call", "the reject", |log| {
        log.len() >= 2
    })
    .await;
    assert_eq!(log[1]["data"]["status"], "reject");
    assert_eq!(log[1]["data"]["id"], call_id.as_str());

    sim.act(Action::Call {
        from: "+15553335555".into(),
    })
    .await
    .expect("ring");
    wait_log(
        &app,
        "&instance=bank&events=call",
        "the second offer",
        |log| log.len() >= 3,
    )
    .await;
    sim.act(Action::Hangup).await.expect("hang up");
    let log = wait_log(&app, "&instance=bank&events=call", "the end", |log| {
        log.len() >= 4
    })
    .await;
    assert_eq!(log[3]["data"]["status"], "end");
    assert_eq!(log[3]["data"]["from"], "+15553335555");
    app.stop().await;
    sim.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_are_rejected_automatically_when_the_instance_asks_for_it() {
    let db = TestDb::new(Backend::Sqlite).await;
    let sim = tcp_modem(SimSettings::default()).await;
    let app = TestApp::spawn(&db).await;
    app.create_instance(
        "bank",
        with(tcp_driver(&sim), json!({ "auto_reject_calls": true })),
    )
    .await;
    wait_connected(&app, "bank").await;
    sim.act(Action::Call {
        from: "+15553334444".into(),
    })
    .await
    .expect("ring");
    let log = wait_log(
        &app,
        "&instance=bank&events=call",
        "offer and reject",
        |log| log.len() >= 2,
    )
    .await;
    let statuses: Vec<&Value> = log.iter().map(|e| &e["data"]["status"]).collect();
    assert_eq!(statuses, [&json!("offer"), &json!("reject")]);
    assert!(!sim.ringing());
    app.stop().await;
    sim.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gnss_fixes_become_location_events_and_no_fix_is_not_an_error() {
    let db = TestDb::new(Backend::Sqlite).await;
    let simcom = tcp_modem(SimSettings::default()).await;
    let quectel = tcp_modem(SimSettings::default()).await;
    let app = TestApp::spawn(&db).await;
    let gnss = |vendor: &str| json!({ "gnss": { "vendor": vendor, "interval_secs": 1 } });
    app.create_instance("simcom", with(tcp_driver(&simcom), gnss("simcom")))
        .await;
    app.create_instance("quectel", with(tcp_driver(&quectel), gnss("quectel")))
        .await;
    wait_connected(&app, "simcom").await;
    wait_connected(&app, "quectel").await;
    // No fix yet: polls go on, nothing is reported, nothing fails.
    wait_sim("a GNSS poll without a fix", || {
        quectel.commands().iter().any(|c| c == "AT+QGPSLOC=2")
            && simcom.commands().iter().any(|c| c == "AT+CGPSINFO")
    })
    .await;
    assert!(app.read_log("&events=location").await.is_empty());

    let fix = json!({ "latitude": 52.52, "longitude": -13.405, "altitude": 34.0, "speed": 18.52, "course": 90.0, "satellites": 9 });
    for sim in [&simcom, &quectel] {
        sim.act(
            serde_json::from_value(with(fix.clone(), json!({ "action": "fix" }))).expect("action"),
        )
        .await
        .expect("fix");
    }
    let log = wait_log(&app, "&events=location", "a fix from both", |log| {
        ["simcom", "quectel"]
            .iter()
            .all(|n| log.iter().any(|e| e["instance"] == *n))
    })
    .await;
    for event in &log {
        let data = &event["data"];
        assert!(
            (data["latitude"].as_f64().expect("lat") - 52.52).abs() < 1e-4,
            "{data}"
        );
        assert!(
            (data["longitude"].as_f64().expect("lon") + 13.405).abs() < 1e-4,
            "{data}"
        );
        assert!(
            (data["speed"].as_f64().expect("speed") - 18.52).abs() < 0.2,
            "{data}"
        );
    }
    let states: Vec<Value> = app
        .read_log("&events=connection")
        .await
        .iter()
        .map(|e| e["data"]["state"].clone())
        .collect();
    assert!(!states.contains(&json!("disconnected")));
    app.stop().await;
    simcom.stop().await;
    quectel.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_shows_signal_operator_registration_and_the_sims_own_number() {
    let db = TestDb::new(Backend::Sqlite).await;
    let sim = tcp_modem(SimSettings {
        registration: 5,
        rssi: 20,
        ..SimSettings::default()
    })
    .await;
    let app = TestApp::spawn(&db).await;
    let mut driver = tcp_driver(&sim);
    driver.as_object_mut().expect("object").remove("number");
    app.create_instance("roamer", driver).await;
    wait_connected(&app, "roamer").await;
    let log = connection_log(&app, "roamer").await;
    let info = &log
        .iter()
        .rev()
        .find(|e| e["data"]["state"] == "connected")
        .expect("connected")["data"]["info"];
    assert_eq!(info["signal"], -73);
    assert_eq!(info["operator"], "Simulated Mobile");
    assert_eq!(info["registration"], "roaming");
    assert_eq!(info["me"]["id"], "+15550009999");
    // The number the SIM reported is the instance's own number for sends.
    let id = app
        .send_text("roamer", "+15557654321", "from the SIM's number")
        .await;
    let log = app.read_log("&instance=roamer&events=outgoing").await;
    let sent = log
        .iter()
        .find(|e| e["data"]["id"] == id.as_str())
        .expect("outgoing");
    assert_eq!(sent["data"]["from"], "+15550009999");
    app.stop().await;
    sim.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_queued_before_a_restart_are_sent_after_it() {
    let db = TestDb::new(Backend::Postgres).await;
    let sim = tcp_modem(SimSettings::default()).await;
    let app = TestApp::spawn(&db).await;
    app.create_instance("bank", tcp_driver(&sim)).await;
    wait_connected(&app, "bank").await;
    let response = app
        .admin(Method::DELETE, "/instance/logout/bank")
        .send()
        .await
        .expect("send");
    assert_eq!(response.status(), 200);
    let id = app
        .send_text("bank", "+15557654321", "waited for the restart")
        .await;
    app.stop().await;
    assert!(sim.submitted().is_empty());

    let app = TestApp::spawn(&db).await;
    let response = app
        .admin(Method::GET, "/instance/connect/bank")
        .send()
        .await
        .expect("send");
    assert_eq!(response.status(), 200);
    wait_log(
        &app,
        "&instance=bank&events=delivery",
        "the delivery",
        |log| {
            log.iter()
                .any(|e| e["data"]["id"] == id.as_str() && e["data"]["status"] == "delivered")
        },
    )
    .await;
    assert_eq!(sim.submitted().len(), 1);
    app.stop().await;
    sim.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_modem_settings_are_refused_with_the_field_named() {
    let db = TestDb::new(Backend::Sqlite).await;
    let app = TestApp::spawn(&db).await;
    for (driver, field) in [
        (json!({ "kind": "serial" }), "port"),
        (json!({ "kind": "tcp", "address": "nowhere" }), "address"),
        (
            json!({ "kind": "serial", "port": "/dev/ttyUSB0", "bogus": 1 }),
            "bogus",
        ),
        (
            json!({ "kind": "tcp", "address": "127.0.0.1:1", "gnss": { "vendor": "garmin" } }),
            "garmin",
        ),
    ] {
        let response = app
            .admin(Method::POST, "/instance/create")
            .json(&json!({ "instanceName": "bad", "driver": driver }))
            .send()
            .await
            .expect("send");
        assert_eq!(response.status(), 400, "{driver}");
        let body: Value = response.json().await.expect("json");
        assert!(
            body["error"]["message"]
                .as_str()
                .unwrap_or("")
                .contains(field),
            "{body}"
        );
    }
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_incomplete_multipart_message_is_delivered_with_the_parts_that_came_after_the_timeout() {
    let db = TestDb::new(Backend::Sqlite).await;
    let sim = tcp_modem(SimSettings::default()).await;
    let app = TestApp::spawn(&db).await;
    app.create_instance(
        "bank",
        with(tcp_driver(&sim), json!({ "multipart_timeout_ms": 700 })),
    )
    .await;
    wait_connected(&app, "bank").await;
    let text = format!("{}{}{}", "a".repeat(153), "b".repeat(153), "c".repeat(100));
    let partial = InboundSms {
        reference: 99,
        only_parts: vec![1, 3],
        ..sms("+15551230000", &text)
    };
    sim.act(Action::Sms(partial)).await.expect("parts 1 and 3");
    let log = wait_log(
        &app,
        "&instance=bank&events=incoming",
        "the incomplete message",
        |log| !log.is_empty(),
    )
    .await;
    assert_eq!(log.len(), 1);
    assert_eq!(log[0]["data"]["parts"], 2);
    assert_eq!(
        log[0]["data"]["content"],
        format!("{}{}", "a".repeat(153), "c".repeat(100))
    );
    wait_sim("storage to be emptied", || sim.storage().is_empty()).await;
    app.stop().await;
    sim.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_in_the_middle_of_a_long_message_sends_only_the_parts_still_missing() {
    let db = TestDb::new(Backend::Postgres).await;
    let sim = tcp_modem(SimSettings::default()).await;
    let driver = with(
        tcp_driver(&sim),
        json!({ "send_attempts": 5, "send_retry_ms": 600000 }),
    );
    let app = TestApp::spawn(&db).await;
    app.create_instance("bank", driver).await;
    wait_connected(&app, "bank").await;
    // Part 1 goes out; part 2 is refused, and its retry is far away.
    sim.act(Action::CmsError {
        code: 42,
        count: 1,
        skip: 1,
    })
    .await
    .expect("fault");
    let text = "x".repeat(400);
    let id = app.send_text("bank", "+15557654321", &text).await;
    wait_sim("part 2 to be refused", || {
        sim.commands()
            .iter()
            .filter(|c| c.starts_with("AT+CMGS="))
            .count()
            >= 2
    })
    .await;
    assert_eq!(sim.submitted().len(), 1);
    app.stop().await;

    let app = TestApp::spawn(&db).await;
    wait_log(
        &app,
        "&instance=bank&events=delivery",
        "the delivery",
        |log| {
            log.iter()
                .any(|e| e["data"]["id"] == id.as_str() && e["data"]["status"] == "delivered")
        },
    )
    .await;
    let sent = sim.submitted();
    let sequences: Vec<u8> = sent
        .iter()
        .map(|s| s.concat.expect("multipart").2)
        .collect();
    assert_eq!(sequences, [1, 2, 3], "each part once, in order");
    assert!(sent
        .iter()
        .all(|s| s.concat.map(|c| c.0) == sent[0].concat.map(|c| c.0)));
    let joined: String = sent.iter().map(|s| s.text.as_str()).collect();
    assert_eq!(joined, text);
    app.stop().await;
    sim.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_registration_change_announced_by_the_modem_becomes_a_connection_event() {
    let db = TestDb::new(Backend::Sqlite).await;
    let sim = tcp_modem(SimSettings::default()).await;
    let app = TestApp::spawn(&db).await;
    // Polls far apart: what follows can only come from the +CREG URC.
    let driver = with(tcp_driver(&sim), json!({ "status_poll_ms": 600000 }));
    app.create_instance("bank", driver).await;
    wait_connected(&app, "bank").await;
    sim.act(Action::Registration { stat: 5 })
        .await
        .expect("roaming");
    wait_log(&app, "&instance=bank&events=connection", "roaming", |log| {
        log.iter()
            .any(|e| e["data"]["info"]["registration"] == "roaming")
    })
    .await;
    sim.act(Action::Registration { stat: 2 })
        .await
        .expect("searching");
    wait_log(
        &app,
        "&instance=bank&events=connection",
        "searching",
        |log| {
            log.last()
                .is_some_and(|e| e["data"]["info"]["registration"] == "searching")
        },
    )
    .await;
    sim.act(Action::Registration { stat: 1 })
        .await
        .expect("home");
    let log = wait_log(
        &app,
        "&instance=bank&events=connection",
        "home again",
        |log| {
            log.last()
                .is_some_and(|e| e["data"]["info"]["registration"] == "home")
        },
    )
    .await;
    assert!(log.iter().all(|e| e["data"]["state"] != "disconnected"));
    app.stop().await;
    sim.stop().await;
}
