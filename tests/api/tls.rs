//! HTTPS and WSS with a certificate generated in the test.

use std::sync::Arc;

use futures_util::StreamExt;
use serde_json::Value;
use switchboard::config::TlsSettings;
use tokio_tungstenite::{tungstenite::Message, Connector};

use crate::helpers::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_and_wss_are_served_with_the_configured_certificate() {
    let db = TestDb::new(Backend::Sqlite).await;
    let certified = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()])
        .expect("a self-signed certificate");
    let cert_path = db.dir.path().join("cert.pem");
    let key_path = db.dir.path().join("key.pem");
    std::fs::write(&cert_path, certified.cert.pem()).expect("write cert");
    std::fs::write(&key_path, certified.signing_key.serialize_pem()).expect("write key");
    let mut settings = test_settings(&db);
    settings.http.tls = Some(TlsSettings {
        cert: cert_path,
        key: key_path,
    });
    let app = TestApp::spawn_with(settings).await;

    // HTTPS, trusting only this certificate.
    let client = reqwest::Client::builder()
        .tls_certs_only([
            reqwest::Certificate::from_pem(certified.cert.pem().as_bytes()).expect("cert"),
        ])
        .build()
        .expect("client");
    let created = client
        .post(format!("https://localhost:{}/instance/create", app.port))
        .header("apikey", &app.admin_key)
        .json(&serde_json::json!({ "instanceName": "alpha", "driver": quick_simulator() }))
        .send()
        .await
        .expect("https create");
    assert_eq!(created.status(), 201);
    let health = client
        .get(format!("https://localhost:{}/health", app.port))
        .send()
        .await
        .expect("https request");
    assert_eq!(health.status(), 200);
    // Plain HTTP to the TLS port gets no answer a client could mistake for one.
    let plain = app.http.get(app.url("/health")).send().await;
    assert!(!plain.is_ok_and(|r| r.status().is_success()));

    // WSS, trusting only this certificate.
    let mut roots = rustls::RootCertStore::empty();
    roots.add(certified.cert.der().clone()).expect("root");
    let config = rustls::ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let url = format!(
        "wss://localhost:{}/ws?apikey={}&events=outgoing",
        app.port, app.admin_key
    );
    let (mut ws, _) = tokio_tungstenite::connect_async_tls_with_config(
        url,
        None,
        false,
        Some(Connector::Rustls(Arc::new(config))),
    )
    .await
    .expect("wss connects");
    let sent = client
        .post(format!(
            "https://localhost:{}/message/sendText/alpha",
            app.port
        ))
        .header("apikey", &app.admin_key)
        .json(&serde_json::json!({ "number": "+15550000001", "text": "over tls" }))
        .send()
        .await
        .expect("send");
    assert_eq!(sent.status(), 201);
    let frame = tokio::time::timeout(WAIT, ws.next())
        .await
        .expect("a frame")
        .expect("open")
        .expect("ok");
    let Message::Text(text) = frame else {
        panic!("text frame")
    };
    let event: Value = serde_json::from_str(&text).expect("json");
    assert_eq!(event["data"]["content"], "over tls");
    app.stop().await;
}
