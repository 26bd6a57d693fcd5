//! Pools across cluster nodes on one PostgreSQL (see `pools.rs` for the
//! rest): members on different nodes take turns, and a killed node's
//! member stops counting once its lease runs out.

use std::collections::HashMap;

use reqwest::Method;
use serde_json::{json, Value};

use crate::helpers::*;
use crate::pools::{per_member, sent_events, LONG};

/// A request to a server process with its admin key.
async fn on(
    node: &crate::process::ServerProcess,
    method: Method,
    path: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let mut request = http_client()
        .request(method, node.url(path))
        .header("apikey", &node.config.admin_key);
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.expect("request");
    let status = response.status().as_u16();
    (status, response.json().await.expect("a JSON body"))
}

/// Two nodes on one PostgreSQL, one member pinned to each: texts accepted
/// on either node take turns across both; once a node is killed, its
/// member stops counting as healthy when its lease runs out, and the other
/// member sends everything.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pool_takes_turns_across_cluster_nodes_and_routes_around_a_killed_one() {
    use crate::process::{ProcessConfig, ServerProcess};
    let db = TestDb::new(Backend::Postgres).await;
    let config = |name: &str| {
        ProcessConfig::new(&db.dir.path().join(name), db.url.clone())
            .with("SWITCHBOARD__CLUSTER__NODE_ID", name)
            .with("SWITCHBOARD__CLUSTER__LEASE_TTL_SECS", 3)
            .with("SWITCHBOARD__CLUSTER__RENEW_SECS", 1)
            .with("SWITCHBOARD__CLUSTER__POLL_MS", 200)
    };
    let mut a = ServerProcess::start(config("node-a")).await;
    let b = ServerProcess::start(config("node-b")).await;
    for (member, node) in [("ma", "node-a"), ("mb", "node-b")] {
        let (status, body) = on(
            &a,
            Method::POST,
            "/instance/create",
            Some(json!({"instanceName": member, "driver": quick_simulator(), "node": node})),
        )
        .await;
        assert_eq!(status, 201, "{body}");
    }
    for member in ["ma", "mb"] {
        wait_for(&format!("{member} to connect"), LONG, async || {
            let (_, body) = on(
                &b,
                Method::GET,
                &format!("/instance/connectionState/{member}"),
                None,
            )
            .await;
            body["instance"]["state"] == "open"
        })
        .await;
    }
    let (status, body) = on(
        &a,
        Method::POST,
        "/pool/create",
        Some(json!({"name": "both", "strategy": "round_robin", "members": ["ma", "mb"]})),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    let sent_by = async |count: usize| -> Vec<Value> {
        wait_for(
            &format!("{count} texts of the pool to be sent"),
            LONG,
            async || {
                let (_, body) = on(
                    &b,
                    Method::GET,
                    "/events?since=0&limit=1000&events=delivery",
                    None,
                )
                .await;
                let sent = sent_events(
                    body["events"].as_array().map(Vec::as_slice).unwrap_or(&[]),
                    "both",
                );
                if sent.len() >= count {
                    Ok(sent)
                } else {
                    Err(format!("{} sent", sent.len()))
                }
            },
        )
        .await
    };
    for n in 0..10 {
        let node = if n % 2 == 0 { &a } else { &b };
        let (status, body) = on(
            node,
            Method::POST,
            "/message/sendText/both",
            Some(json!({"number": format!("+1555000{n:04}"), "text": "across"})),
        )
        .await;
        assert_eq!(status, 201, "{body}");
    }
    let sent = sent_by(10).await;
    assert_eq!(
        per_member(&sent),
        HashMap::from([("ma".to_owned(), 5), ("mb".to_owned(), 5)])
    );

    a.kill();
    for n in 0..6 {
        let (status, body) = on(
            &b,
            Method::POST,
            "/message/sendText/both",
            Some(json!({"number": format!("+1555100{n:04}"), "text": "after the kill"})),
        )
        .await;
        assert_eq!(status, 201, "{body}");
    }
    let sent = sent_by(16).await;
    assert_eq!(
        per_member(&sent[10..]),
        HashMap::from([("mb".to_owned(), 6)])
    );
    b.stop().await;
}
