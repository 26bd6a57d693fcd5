//! Liveness, readiness and Prometheus metrics.

use std::{fmt::Write, sync::atomic::Ordering};

use actix_web::{web, HttpResponse};
use serde::Serialize;
use utoipa::ToSchema;

use super::AppState;

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

/// Prometheus metrics (text exposition format 0.0.4). No key needed.
///
/// The numbers already live in atomics next to the code they describe;
/// writing the dozen lines of text format by hand costs less than a metrics
/// registry and its locking on the hot path.
#[utoipa::path(
    get, path = "/metrics", tag = "operations", operation_id = "metrics", security(),
    responses((status = 200, description = "Counters and gauges",
        content_type = "text/plain; version=0.0.4", body = String,
        example = "# HELP switchboard_events_committed_total Events committed to the log.\n# TYPE switchboard_events_committed_total counter\nswitchboard_events_committed_total 42\n")),
)]
pub async fn metrics(state: web::Data<AppState>) -> HttpResponse {
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
        "switchboard_webhook_backlog",
        "gauge",
        "Events not yet delivered to webhooks, counted by id.",
        state.service.webhooks().backlog(),
    );
    metric(
        "switchboard_instances",
        "gauge",
        "Instances on this node.",
        state.service.instances().len() as u64,
    );
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4")
        .body(out)
}
