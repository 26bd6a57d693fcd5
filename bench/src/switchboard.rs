//! Driving a switchboard server: simulator instances through the admin REST
//! API (header `apikey`) and the counters of its Prometheus `/metrics`.
//!
//! The generic client never needs this; the scenarios use it to set the
//! publish rate and to read what the server committed.

use std::{collections::HashMap, time::Duration};

use anyhow::{bail, Context};
use reqwest::StatusCode;
use serde_json::json;

/// The admin API of one server.
#[derive(Clone)]
pub struct Admin {
    http: reqwest::Client,
    /// `http://host:port`, derived from the WebSocket URL.
    base: String,
    key: String,
    /// Nodes new instances are pinned to, round robin (`--pin-node`).
    pin_nodes: Vec<String>,
    /// `http://host:port` of the other nodes of a cluster, whose `/metrics`
    /// counters add to this one's (`--peer-url`).
    peers: Vec<String>,
}

/// The counters a scenario reads from `/metrics`.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Metrics {
    pub committed: u64,
    pub batches: u64,
    pub largest_batch: u64,
    pub connections: u64,
    pub delivered_frames: u64,
    pub lagging_total: u64,
}

/// How long one admin request may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

impl Admin {
    /// The admin API of the server behind `ws_url` (same host and port).
    pub fn for_ws_url(ws_url: &str, key: &str) -> anyhow::Result<Admin> {
        let base = http_base(ws_url)?;
        // In this workspace reqwest carries the server's TLS features, which
        // need the process's crypto provider chosen first (idempotent).
        let _ = rustls::crypto::ring::default_provider().install_default();
        let http = reqwest::Client::builder()
            .timeout(REQUEST_TIMEOUT)
            .build()
            .context("while building the HTTP client")?;
        Ok(Admin {
            http,
            base,
            key: key.to_string(),
            pin_nodes: Vec::new(),
            peers: Vec::new(),
        })
    }

    /// Instances this API creates are pinned to `nodes`, round robin by
    /// their index (none: the server places them).
    pub fn pinning(mut self, nodes: &[String]) -> Admin {
        self.pin_nodes = nodes.to_vec();
        self
    }

    /// The other nodes of the cluster (ws:// URLs), whose `/metrics`
    /// counters [`Admin::metrics`] adds to this node's.
    pub fn with_peers(mut self, ws_urls: &[String]) -> anyhow::Result<Admin> {
        self.peers = ws_urls
            .iter()
            .map(|u| http_base(u))
            .collect::<anyhow::Result<_>>()?;
        Ok(self)
    }

    /// Waits until `/health` answers 200.
    pub async fn wait_healthy(&self, wait: Duration) -> anyhow::Result<()> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            match self.http.get(format!("{}/health", self.base)).send().await {
                Ok(r) if r.status().is_success() => return Ok(()),
                _ if tokio::time::Instant::now() >= deadline => {
                    bail!("{}/health did not answer 200 within {wait:?}", self.base)
                }
                _ => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
    }

    /// The database behind the log (`sqlite`, `postgres`), from `/ready`.
    pub async fn backend(&self) -> anyhow::Result<String> {
        let body: serde_json::Value = self
            .http
            .get(format!("{}/ready", self.base))
            .send()
            .await
            .context("while reading /ready")?
            .json()
            .await
            .context("/ready did not answer JSON")?;
        Ok(body["database"].as_str().unwrap_or("unknown").to_string())
    }

    /// Creates a simulator instance generating `rate` random inbound events
    /// per second from `seed`, with echo replies off (they would add events
    /// the rate does not count). A leftover of the same name from an
    /// interrupted run is deleted first. With pin nodes, the instance is
    /// pinned to the one at `slot` (round robin).
    pub async fn create_simulator(
        &self,
        name: &str,
        rate: f64,
        seed: u64,
        slot: usize,
    ) -> anyhow::Result<()> {
        let mut body = json!({
            "instanceName": name,
            "driver": { "kind": "simulator", "rate": rate, "seed": seed, "echo": false },
        });
        if !self.pin_nodes.is_empty() {
            body["node"] = json!(self.pin_nodes[slot % self.pin_nodes.len()]);
        }
        for _ in 0..2 {
            let response = self
                .http
                .post(format!("{}/instance/create", self.base))
                .header("apikey", &self.key)
                .json(&body)
                .send()
                .await
                .with_context(|| format!("while creating instance {name}"))?;
            match response.status() {
                StatusCode::CREATED | StatusCode::OK => return Ok(()),
                StatusCode::CONFLICT => self.delete(name).await?,
                status => bail!(
                    "creating instance {name}: {status}: {}",
                    response.text().await.unwrap_or_default()
                ),
            }
        }
        bail!("instance {name} still exists after deleting it")
    }

    /// Sends one text through `message/sendText/{instance}` and returns the
    /// answer's status (201: committed to the outbox). The body is read to
    /// the end so the connection is reused.
    pub async fn send_text(
        &self,
        instance: &str,
        number: &str,
        text: &str,
    ) -> anyhow::Result<StatusCode> {
        let response = self
            .http
            .post(format!("{}/message/sendText/{instance}", self.base))
            .header("apikey", &self.key)
            .json(&json!({ "number": number, "text": text }))
            .send()
            .await
            .with_context(|| format!("while sending a text through {instance}"))?;
        let status = response.status();
        response.bytes().await?;
        Ok(status)
    }

    /// Deletes an instance; one that does not exist is fine.
    pub async fn delete(&self, name: &str) -> anyhow::Result<()> {
        let response = self
            .http
            .delete(format!("{}/instance/delete/{name}", self.base))
            .header("apikey", &self.key)
            .send()
            .await
            .with_context(|| format!("while deleting instance {name}"))?;
        match response.status() {
            s if s.is_success() || s == StatusCode::NOT_FOUND => Ok(()),
            status => bail!(
                "deleting instance {name}: {status}: {}",
                response.text().await.unwrap_or_default()
            ),
        }
    }

    /// The id of the first event in the log after `since`, if any.
    pub async fn first_after(&self, since: i64) -> anyhow::Result<Option<i64>> {
        let body: serde_json::Value = self
            .http
            .get(format!("{}/events?since={since}&limit=1", self.base))
            .header("apikey", &self.key)
            .send()
            .await
            .context("while reading /events")?
            .error_for_status()?
            .json()
            .await
            .context("/events did not answer JSON")?;
        Ok(body["events"].get(0).and_then(|e| e["id"].as_i64()))
    }

    /// The highest event id in the log (0 when it is empty).
    pub async fn head_id(&self) -> anyhow::Result<i64> {
        find_head(|since| self.first_after(since)).await
    }

    /// Stops an instance's actor and keeps its data (its events stay in the
    /// log; deleting an instance deletes them).
    pub async fn logout(&self, name: &str) -> anyhow::Result<()> {
        let response = self
            .http
            .delete(format!("{}/instance/logout/{name}", self.base))
            .header("apikey", &self.key)
            .send()
            .await
            .with_context(|| format!("while stopping instance {name}"))?;
        match response.status() {
            s if s.is_success() => Ok(()),
            status => bail!(
                "stopping instance {name}: {status}: {}",
                response.text().await.unwrap_or_default()
            ),
        }
    }

    /// The counters from `/metrics`, added up over the peers when there
    /// are any (the largest batch is the largest of any node).
    pub async fn metrics(&self) -> anyhow::Result<Metrics> {
        let mut total = self.metrics_of(&self.base).await?;
        for peer in &self.peers {
            let m = self.metrics_of(peer).await?;
            total.committed += m.committed;
            total.batches += m.batches;
            total.largest_batch = total.largest_batch.max(m.largest_batch);
            total.connections += m.connections;
            total.delivered_frames += m.delivered_frames;
            total.lagging_total += m.lagging_total;
        }
        Ok(total)
    }

    /// The counters from one node's `/metrics`.
    async fn metrics_of(&self, base: &str) -> anyhow::Result<Metrics> {
        let text = self
            .http
            .get(format!("{base}/metrics"))
            .send()
            .await
            .with_context(|| format!("while reading {base}/metrics"))?
            .error_for_status()?
            .text()
            .await?;
        let values = parse_prometheus(&text);
        let get = |name: &str| values.get(name).map_or(0, |v| *v as u64);
        Ok(Metrics {
            committed: get("switchboard_events_committed_total"),
            batches: get("switchboard_log_batches_total"),
            largest_batch: get("switchboard_log_batch_largest"),
            connections: get("switchboard_connections"),
            delivered_frames: get("switchboard_frames_delivered_total"),
            lagging_total: get("switchboard_lagging_connections_total"),
        })
    }
}

/// `http://host:port` of a `ws://` URL (same host and port).
fn http_base(ws_url: &str) -> anyhow::Result<String> {
    let rest = ws_url
        .strip_prefix("ws://")
        .with_context(|| format!("not a ws:// URL: {ws_url}"))?;
    let authority = rest.split(['/', '?']).next().unwrap_or(rest);
    Ok(format!("http://{authority}"))
}

/// The highest id in a log, given `first_after(s)`: the first id above `s`
/// (ids increase but may have holes, where instances were deleted). Each
/// answer is an id that exists, so the search gallops up from the first id
/// to a bound with nothing above it, then halves the gap: about two
/// requests per bit of the head id.
pub async fn find_head<F, Fut>(mut first_after: F) -> anyhow::Result<i64>
where
    F: FnMut(i64) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<Option<i64>>>,
{
    // `low` always exists; nothing exists above `high`.
    let Some(mut low) = first_after(0).await? else {
        return Ok(0);
    };
    let mut gap = 1024;
    let mut high = low + gap;
    while let Some(id) = first_after(high).await? {
        low = id;
        gap *= 2;
        high = low + gap;
    }
    while low < high {
        let middle = low + (high - low) / 2;
        match first_after(middle).await? {
            Some(id) => low = id,
            None => high = middle,
        }
    }
    Ok(low)
}

/// Samples without labels from Prometheus text exposition: `name value`.
/// Comments, labelled samples and unparsable lines are skipped.
pub fn parse_prometheus(text: &str) -> HashMap<String, f64> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let mut parts = l.split_ascii_whitespace();
            let name = parts.next()?;
            if name.contains('{') {
                return None;
            }
            let value: f64 = parts.next()?.parse().ok()?;
            Some((name.to_string(), value))
        })
        .collect()
}

/// Instances a scenario created, so it can delete them whatever happens.
pub struct Instances {
    admin: Admin,
    names: Vec<String>,
}

impl Instances {
    pub fn new(admin: &Admin) -> Instances {
        Instances {
            admin: admin.clone(),
            names: Vec::new(),
        }
    }

    /// Creates `count` simulators named `{prefix}-{i}` at `rate` each, with
    /// seeds `seed + i`.
    pub async fn create(
        &mut self,
        prefix: &str,
        count: usize,
        rate: f64,
        seed: u64,
    ) -> anyhow::Result<()> {
        for i in 0..count {
            let name = format!("{prefix}-{i}");
            self.admin
                .create_simulator(&name, rate, seed + i as u64, i)
                .await?;
            self.names.push(name);
        }
        Ok(())
    }

    /// Creates one simulator named `name` at `rate`.
    pub async fn create_named(&mut self, name: &str, rate: f64, seed: u64) -> anyhow::Result<()> {
        self.admin.create_simulator(name, rate, seed, 0).await?;
        self.names.push(name.to_owned());
        Ok(())
    }

    /// Stops every instance's actor, keeping it and its events. All at
    /// once: stopping a busy simulator waits for its commits in flight, and
    /// one by one the others would go on filling the log meanwhile.
    pub async fn stop_all(&self) -> anyhow::Result<()> {
        let stops = self.names.iter().map(|name| self.admin.logout(name));
        futures_util::future::join_all(stops)
            .await
            .into_iter()
            .collect::<anyhow::Result<Vec<()>>>()?;
        Ok(())
    }

    /// Deletes every instance created so far, all at once; reports the
    /// first failure after trying them all.
    pub async fn delete_all(&mut self) -> anyhow::Result<()> {
        let names = std::mem::take(&mut self.names);
        let deletes = names.iter().map(|name| self.admin.delete(name));
        let results = futures_util::future::join_all(deletes).await;
        results.into_iter().find(Result::is_err).unwrap_or(Ok(()))
    }
}

/// The comma-separated names `{prefix}-0 .. {prefix}-{count-1}`, for an
/// `instances=` filter.
pub fn instance_names(prefix: &str, count: usize) -> String {
    (0..count)
        .map(|i| format!("{prefix}-{i}"))
        .collect::<Vec<_>>()
        .join(",")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prometheus_text_gives_unlabelled_samples() {
        let text = "# HELP switchboard_events_committed_total Events.\n\
                    # TYPE switchboard_events_committed_total counter\n\
                    switchboard_events_committed_total 12345\n\
                    switchboard_log_batch_largest 64\n\
                    http_requests{path=\"/\"} 3\n\
                    garbage\n";
        let values = parse_prometheus(text);
        assert_eq!(
            values.get("switchboard_events_committed_total"),
            Some(&12345.0)
        );
        assert_eq!(values.get("switchboard_log_batch_largest"), Some(&64.0));
        assert_eq!(values.len(), 2);
    }

    #[test]
    fn the_admin_base_comes_from_the_websocket_url() {
        let admin = Admin::for_ws_url("ws://127.0.0.1:8080/ws?x=1", "k").unwrap();
        assert_eq!(admin.base, "http://127.0.0.1:8080");
        assert!(Admin::for_ws_url("wss://h/ws", "k").is_err());
    }

    async fn head_of(ids: &[i64]) -> i64 {
        find_head(|since| {
            let next = ids.iter().copied().find(|id| *id > since);
            async move { Ok(next) }
        })
        .await
        .unwrap()
    }

    #[tokio::test]
    async fn the_head_is_found_across_holes_and_sizes() {
        assert_eq!(head_of(&[]).await, 0);
        assert_eq!(head_of(&[1]).await, 1);
        assert_eq!(head_of(&[3, 4, 9]).await, 9);
        let mut ids: Vec<i64> = (1..=100_000).collect();
        ids.retain(|id| !(5_000..60_000).contains(id) && *id != 100_000);
        assert_eq!(head_of(&ids).await, 99_999);
        assert_eq!(head_of(&[1, 2, 1_000_003]).await, 1_000_003);
    }

    #[test]
    fn instance_name_lists_are_comma_separated() {
        assert_eq!(
            instance_names("bench-x", 3),
            "bench-x-0,bench-x-1,bench-x-2"
        );
    }
}
