//! Liveness, readiness and Prometheus metrics.

use std::{fmt::Write, sync::atomic::Ordering};

use actix_web::{web, HttpRequest, HttpResponse};
use serde_json::json;

use super::{authenticate, client_address, error::ApiError, presented_key, AppState};

/// Liveness: the process answers.
pub async fn health() -> HttpResponse {
    HttpResponse::Ok().json(json!({ "status": "ok" }))
}

/// Readiness: the database answers and the server is not shutting down.
pub async fn ready(state: web::Data<AppState>) -> HttpResponse {
    let backend = state.service.database_name();
    if state.shutdown.is_cancelled() {
        return HttpResponse::ServiceUnavailable()
            .json(json!({ "status": "shutting_down", "database": backend }));
    }
    match state.service.database_ready().await {
        Ok(()) => HttpResponse::Ok().json(json!({ "status": "ready", "database": backend })),
        Err(err) => {
            tracing::warn!(error = %err, "readiness check failed");
            HttpResponse::ServiceUnavailable()
                .insert_header(("Retry-After", "2"))
                .json(json!({ "status": "database_unavailable", "database": backend }))
        }
    }
}

/// Prometheus text exposition. The numbers already live in atomics next to
/// the code they describe; writing the dozen lines of text format by hand
/// costs less than a metrics registry and its locking on the hot path.
///
/// With `http.metrics_require_key` it needs the admin key, like any admin
/// route (`apikey` header or `Authorization: Bearer`).
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
    Ok(HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4")
        .body(out))
}
