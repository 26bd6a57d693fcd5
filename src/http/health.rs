//! Liveness, readiness and Prometheus metrics.

use std::{fmt::Write, sync::atomic::Ordering};

use actix_web::{web, HttpRequest, HttpResponse};
use serde::Serialize;
use utoipa::ToSchema;

use super::{authenticate, client_address, error::ApiError, presented_key, AppState};

/// `GET /health`'s answer.
#[derive(Serialize, ToSchema)]
pub struct Health {
    #[schema(pattern = "^ok$")]
    status: &'static str,
}

/// Liveness: the process answers. No key needed.
#[utoipa::path(
    get, path = "/health", tag = "operations", operation_id = "health", security(),
    responses((status = 200, description = "The process answers", body = Health,
        example = json!({"status": "ok"}))),
)]
pub async fn health() -> HttpResponse {
    HttpResponse::Ok().json(Health { status: "ok" })
}

/// `GET /ready`'s answer.
#[derive(Serialize, ToSchema)]
pub struct Readiness {
    /// `postgres` or `sqlite`.
    database: &'static str,
    /// `ready`, or why not: `shutting_down`, `database_unavailable`.
    #[schema(pattern = "^(ready|shutting_down|database_unavailable)$")]
    status: &'static str,
}

/// Readiness: the database answers and the server is not shutting down.
/// No key needed.
#[utoipa::path(
    get, path = "/ready", tag = "operations", operation_id = "ready", security(),
    responses(
        (status = 200, description = "Ready", body = Readiness,
            example = json!({"database": "sqlite", "status": "ready"})),
        (status = 503, description = "Not ready: shutting down, or the database is unreachable (retry)",
            body = Readiness, headers(("Retry-After" = u32, description = "Seconds")),
            example = json!({"database": "postgres", "status": "database_unavailable"})),
    ),
)]
pub async fn ready(state: web::Data<AppState>) -> HttpResponse {
    let database = state.service.database_name();
    if state.shutdown.is_cancelled() {
        return HttpResponse::ServiceUnavailable().json(Readiness {
            database,
            status: "shutting_down",
        });
    }
    match state.service.database_ready().await {
        Ok(()) => HttpResponse::Ok().json(Readiness {
            database,
            status: "ready",
        }),
        Err(err) => {
            tracing::warn!(error = %err, "readiness check failed");
            HttpResponse::ServiceUnavailable()
                .insert_header(("Retry-After", "2"))
                .json(Readiness {
                    database,
                    status: "database_unavailable",
                })
        }
    }
}

/// Prometheus metrics (text exposition format 0.0.4).
///
/// The numbers already live in atomics next to the code they describe;
/// writing the dozen lines of text format by hand costs less than a metrics
/// registry and its locking on the hot path. With `http.metrics_require_key`
/// it needs the admin key, like any admin route (`apikey` header or
/// `Authorization: Bearer`); otherwise no key is needed.
#[utoipa::path(
    get, path = "/metrics", tag = "operations", operation_id = "metrics",
    security((), ("apikey" = []), ("bearer" = [])),
    responses(
        (status = 200, description = "Counters and gauges",
            content_type = "text/plain; version=0.0.4", body = String,
            example = "# HELP switchboard_events_committed_total Events committed to the log.\n# TYPE switchboard_events_committed_total counter\nswitchboard_events_committed_total 42\n"),
    ),
)]
pub async fn metrics(
    req: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    if state.settings.http.metrics_require_key {
        let scope = authenticate(
            &state,
            client_address(&state, req.headers(), req.peer_addr().map(|a| a.ip())),
            presented_key(req.headers(), None),
            false,
        )?;
        if !scope.is_admin() {
            return Err(ApiError::Forbidden("/metrics needs the admin key".into()));
        }
    }
    let log = state.service.log().stats();
    let hub = state.service.hub().stats();
    let mut out = String::with_capacity(1024);
    let mut metric = |name: &str, kind: &str, help: &str, value: u64| {
        let _ = writeln!(
            out,
            "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}"
        );
    };
    metric(
        "switchboard_events_committed_total",
        "counter",
        "Events committed to the log.",
        log.events.load(Ordering::Relaxed),
    );
    metric(
        "switchboard_log_batches_total",
        "counter",
        "Transactions the log writer committed.",
        log.batches.load(Ordering::Relaxed),
    );
    metric(
        "switchboard_log_batch_largest",
        "gauge",
        "Most events committed in one transaction.",
        log.largest_batch.load(Ordering::Relaxed),
    );
    metric(
        "switchboard_log_failed_batches_total",
        "counter",
        "Transactions that failed to commit.",
        log.failed_batches.load(Ordering::Relaxed),
    );
    metric(
        "switchboard_log_isolated_batches_total",
        "counter",
        "Batches committed again job by job because the database refused what one job held.",
        log.isolated_batches.load(Ordering::Relaxed),
    );
    metric(
        "switchboard_connections",
        "gauge",
        "Open WebSocket and SSE connections.",
        hub.connections.load(Ordering::Relaxed) as u64,
    );
    metric(
        "switchboard_queued_bytes",
        "gauge",
        "Bytes of events queued for connections.",
        hub.queued_bytes.load(Ordering::Relaxed) as u64,
    );
    metric(
        "switchboard_owed_bytes",
        "gauge",
        "Bytes WebSocket sessions encoded that their sockets have not taken yet.",
        hub.owed_bytes.load(Ordering::Relaxed) as u64,
    );
    metric(
        "switchboard_frames_delivered_total",
        "counter",
        "Event frames handed to connections.",
        hub.delivered_frames.load(Ordering::Relaxed),
    );
    metric(
        "switchboard_lagging_connections_total",
        "counter",
        "Times a connection fell behind its queue limit.",
        hub.lagged_connections.load(Ordering::Relaxed),
    );
    let webhooks = state.service.webhooks().stats();
    metric(
        "switchboard_webhook_deliveries_total",
        "counter",
        "Events delivered to webhooks.",
        webhooks.delivered.load(Ordering::Relaxed),
    );
    metric(
        "switchboard_webhook_failures_total",
        "counter",
        "Webhook delivery attempts that failed (each is retried).",
        webhooks.failed_attempts.load(Ordering::Relaxed),
    );
    metric(
        "switchboard_webhook_stopped_total",
        "counter",
        "Webhooks whose deliveries stopped for good because the receiver answered 410 Gone.",
        webhooks.stopped.load(Ordering::Relaxed),
    );
    metric(
        "switchboard_webhook_backlog",
        "gauge",
        "Events not yet delivered to webhooks, counted by id.",
        state.service.webhooks().backlog(),
    );
    metric(
        "switchboard_modem_urcs_dropped_total",
        "counter",
        "Unsolicited results a modem sent faster than they were handled (oldest dropped).",
        crate::modem::at::urcs_dropped(),
    );
    metric(
        "switchboard_instances",
        "gauge",
        "Instances on this node.",
        state.service.instances().len() as u64,
    );
    if let Some(cluster) = state.service.cluster() {
        let stats = cluster.stats();
        metric(
            "switchboard_cluster_nodes_alive",
            "gauge",
            "Cluster nodes whose heartbeat is within the lease TTL, as this node last saw.",
            stats.nodes_alive.load(Ordering::Relaxed),
        );
        metric(
            "switchboard_cluster_leases_held",
            "gauge",
            "Leases (instances and webhooks) this node holds.",
            stats.leases_held.load(Ordering::Relaxed),
        );
        metric(
            "switchboard_cluster_lease_acquisitions_total",
            "counter",
            "Leases this node acquired (each with a new fencing token).",
            stats.acquisitions.load(Ordering::Relaxed),
        );
        metric(
            "switchboard_cluster_lease_losses_total",
            "counter",
            "Leases this node lost: taken by another node, or not renewed in time.",
            stats.losses.load(Ordering::Relaxed),
        );
    }
    // One series per pool; a database that does not answer leaves the
    // gauge out rather than failing the scrape.
    match state.service.pool_backlog().await {
        Ok(pools) => {
            let _ = writeln!(
                out,
                "# HELP switchboard_pool_queued Messages waiting in a pool, not taken by a member yet.\n\
                 # TYPE switchboard_pool_queued gauge"
            );
            for (pool, queued) in pools {
                let _ = writeln!(out, "switchboard_pool_queued{{pool=\"{pool}\"}} {queued}");
            }
        }
        Err(err) => tracing::warn!(error = %err, "/metrics: pools unreadable"),
    }
    Ok(HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4")
        .body(out))
}
