//! The dashboard: what `GET /` and `/dashboard/...` serve, and the app
//! itself in a real headless Chromium (driven by Playwright from
//! `dashboard/e2e/run.mjs`): sign in, a wrong key, create instances, live
//! events, sending a text to `delivered`, filters, pause and resume from
//! the last id, a server restart, webhook and retention, metrics, the
//! cluster's nodes, message history (the list, its filters, one message),
//! pools (one created in the form and a text sent through it), delete, and an instance key that
//! sees only its instance. It takes screenshots of every screen at desktop
//! and phone width into `target/dashboard-screenshots/`.

use std::{
    path::{Path, PathBuf},
    process::Stdio,
    time::Duration,
};

use reqwest::header::{ACCEPT, CACHE_CONTROL, CONTENT_TYPE, VARY};
use serde_json::Value;
use tokio::{
    io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader},
    process::Command,
};

use crate::helpers::*;

const BROWSER_ACCEPT: &str = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8";

fn dashboard_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("dashboard")
}

async fn get(app: &TestApp, path: &str, accept: Option<&str>) -> reqwest::Response {
    let mut request = app.http.get(app.url(path));
    if let Some(accept) = accept {
        request = request.header(ACCEPT, accept);
    }
    request.send().await.expect("request")
}

fn header(response: &reqwest::Response, name: impl reqwest::header::AsHeaderName) -> &str {
    response
        .headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_root_serves_the_dashboard_to_browsers_and_the_api_pointer_to_everyone_else() {
    let db = TestDb::new(Backend::Sqlite).await;
    let app = TestApp::spawn(&db).await;

    let page = get(&app, "/", Some(BROWSER_ACCEPT)).await;
    assert_eq!(page.status(), 200);
    assert_eq!(header(&page, CONTENT_TYPE), "text/html; charset=utf-8");
    assert_eq!(header(&page, VARY), "Accept");
    assert_eq!(header(&page, CACHE_CONTROL), "no-cache");
    let csp = header(&page, "content-security-policy").to_owned();
    assert!(
        csp.contains("script-src 'self'") && csp.contains("frame-ancestors 'none'"),
        "{csp}"
    );
    let html = page.text().await.expect("page");
    assert!(html.contains(r#"<div id="app">"#), "{html}");
    let script = html
        .split(r#"src=""#)
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .expect("the page loads a script")
        .to_owned();
    assert!(script.starts_with("/dashboard/assets/"), "{script}");

    // Without a browser's Accept: the JSON pointer, as before.
    for accept in [None, Some("*/*"), Some("application/json")] {
        let pointer = get(&app, "/", accept).await;
        assert_eq!(pointer.status(), 200);
        assert_eq!(header(&pointer, VARY), "Accept");
        let body: Value = pointer.json().await.expect("JSON for {accept:?}");
        assert_eq!(body["websocket"], "/ws", "{accept:?}: {body}");
    }

    let asset = get(&app, &script, None).await;
    assert_eq!(asset.status(), 200);
    assert_eq!(header(&asset, CONTENT_TYPE), "text/javascript");
    assert!(header(&asset, CACHE_CONTROL).contains("immutable"));
    assert!(!asset.bytes().await.expect("script").is_empty());

    let again = get(&app, "/dashboard/", None).await;
    assert_eq!(again.status(), 200, "/dashboard/ is the page too");
    assert_eq!(again.text().await.expect("page"), html);

    for missing in [
        "/dashboard/nope.js",
        "/dashboard/SOURCES.sha256",
        "/dashboard/../Cargo.toml",
        "/dashboard/assets/../../src/main.rs",
    ] {
        let response = get(&app, missing, None).await;
        assert_eq!(response.status(), 404, "{missing}");
        let body: Value = response.json().await.expect("a JSON error");
        assert_eq!(body["error"]["code"], "NOT_FOUND", "{missing}: {body}");
    }

    // A WebSocket upgrade on / still reaches the stream, browser or not.
    let mut ws = app.ws(&format!("/?apikey={}", app.admin_key)).await;
    ws.send_json(serde_json::json!({ "type": "ping" })).await;
    assert_eq!(ws.control(WAIT).await["type"], "pong");
    ws.close().await;
    app.stop().await;
}

/// The screens the browser run must have photographed, at both widths.
const SCREENS: &[&str] = &[
    "sign-in-refused",
    "create-validation",
    "create-done",
    "instances",
    "events",
    "send",
    "events-filtered",
    "instance",
    "metrics",
    "cluster",
    "pools",
    "message-history",
    "messages",
    "delete-confirm",
    "instance-key-instances",
    "instance-key-events",
    "instance-key-send",
    "instance-key-messages",
    "instance-key-cluster",
    "instance-key-pools",
];

/// The steps the browser run reports, in order.
const STEPS: &[&str] = &[
    "a wrong key shows a clear message",
    "the admin signs in with the keyboard",
    "the create form explains what to fix",
    "the admin creates simulator instances",
    "instances show state, driver, signal and operator",
    "the event stream shows alpha's events live",
    "a text is sent and its delivery shows",
    "a text to a group is tracked per member",
    "filters, pause and resume from the last id",
    "webhook status and retention per instance",
    "log out, connect and restart an instance",
    "metrics as charts",
    "the cluster's nodes, and a pool created and sent through",
    "message history: the list, its filters and one message",
    "delete asks first",
    "after a server restart the stream resumes from its last id",
    "signing out forgets the key",
    "an instance key sees only its instance",
    "no console errors",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_runs_every_screen_in_a_real_browser_for_the_admin_and_an_instance_key() {
    let dir = dashboard_dir();
    assert!(
        dir.join("node_modules/playwright-core").is_dir(),
        "dashboard/node_modules is missing: run the tests with scripts/test.sh, which runs `npm ci` in dashboard/"
    );
    let shots = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/dashboard-screenshots");
    let _ = std::fs::remove_dir_all(&shots);

    let db = TestDb::new(Backend::Postgres).await;
    let mut settings = test_settings(&db);
    // Two workers: the page, its streams and the test's own calls at once.
    settings.http.workers = 2;
    // Some: the server is taken down and brought back halfway.
    let mut app = Some(TestApp::spawn_with(settings.clone()).await);
    let (port, url, admin_key) = {
        let app = app.as_ref().expect("started");
        (app.port, app.url(""), app.admin_key.clone())
    };

    let node = std::env::var("NODE").unwrap_or_else(|_| "node".to_owned());
    let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| "chromium".to_owned());
    let mut child = Command::new(&node)
        .arg("e2e/run.mjs")
        .current_dir(&dir)
        .env("SB_URL", &url)
        .env("SB_ADMIN_KEY", &admin_key)
        .env("SB_SHOTS", &shots)
        .env("CHROMIUM", &chromium)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|e| {
            panic!("start {node} ({e}): run the tests with scripts/test.sh, which installs Node.js")
        });
    let mut stdin = child.stdin.take().expect("stdin");
    let mut stdout = BufReader::new(child.stdout.take().expect("stdout")).lines();
    let mut stderr = child.stderr.take().expect("stderr");
    let errors = tokio::spawn(async move {
        let mut text = String::new();
        let _ = stderr.read_to_string(&mut text).await;
        text
    });

    let mut said = Vec::new();
    let run = async {
        while let Some(line) = stdout.next_line().await.expect("read the script's output") {
            if line == "restart-server" {
                // The same port and database: the page reconnects by itself.
                app.take().expect("running").stop().await;
                settings.http.port = port;
                app = Some(TestApp::spawn_with(settings.clone()).await);
                stdin
                    .write_all(b"restarted\n")
                    .await
                    .expect("answer the script");
            }
            said.push(line);
        }
    };
    let finished = tokio::time::timeout(Duration::from_secs(600), run).await;
    let status = if finished.is_ok() {
        child.wait().await.expect("the script's exit status")
    } else {
        let _ = child.kill().await;
        child.wait().await.expect("the killed script's exit status")
    };
    let errors = errors.await.expect("stderr reader");
    let said = said.join("\n");
    assert!(
        finished.is_ok() && status.success(),
        "the browser run failed ({status}):\n{said}\n{errors}\n(screenshots in {})",
        shots.display()
    );
    let passed: Vec<&str> = said.lines().filter_map(|l| l.strip_prefix("ok ")).collect();
    assert_eq!(passed, STEPS, "every step, in order:\n{said}");
    assert!(said.ends_with("all steps passed"), "{said}");
    for screen in SCREENS {
        for width in ["desktop", "phone"] {
            let file = shots.join(format!("{width}-{screen}.png"));
            let bytes = std::fs::read(&file)
                .unwrap_or_else(|e| panic!("no screenshot {}: {e}", file.display()));
            assert!(
                bytes.starts_with(b"\x89PNG"),
                "{} is not a PNG",
                file.display()
            );
        }
    }
    app.expect("running").stop().await;
}
