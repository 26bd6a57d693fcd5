//! `GET /events/stream`, and `GET /events` asked for `text/event-stream`:
//! Server-Sent Events with the same credentials, filters and cursor as the
//! WebSocket.
//!
//! Each event is `id: <log id>`, `event: <kind>`, `data: <envelope>`, so a
//! browser `EventSource` resumes by itself: it reconnects with
//! `Last-Event-ID`, which wins over `?since=`. On `/events` (seed 002's
//! `new EventSource('/events')`) the `plain` profile leaves out the `event:`
//! line, so `onmessage` sees every event; `?profile=` chooses either way. A `retry:` line opens the
//! stream and comment lines keep proxies from closing an idle one. The body
//! is pulled by the HTTP layer only as fast as the client reads, so the feed
//! behind it catches a slow client up from the log instead of buffering.

use std::{convert::Infallible, time::Duration};

use actix_web::{web, web::Bytes, HttpRequest, HttpResponse};
use serde_json::json;

use super::{
    limits::ConnectionSlot,
    realtime::{admit, check_origin, choose_profile, Admission, Endpoint, StreamParams},
    AppState,
};
use crate::{
    domain::StreamProfile,
    event::{profile, Frame},
    http::error::ApiError,
    hub::feed::Feed,
};

/// `OPTIONS /events/stream`: the CORS preflight some browsers send when an
/// `EventSource` reconnects with `Last-Event-ID`.
pub async fn preflight(
    req: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let mut response = HttpResponse::NoContent();
    if let Some(origin) = check_origin(req.head(), &state.settings.http.allowed_origins)? {
        response
            .insert_header(("Access-Control-Allow-Origin", origin))
            .insert_header(("Access-Control-Allow-Methods", "GET"))
            .insert_header((
                "Access-Control-Allow-Headers",
                "Last-Event-ID, Authorization, apikey",
            ))
            .insert_header(("Access-Control-Max-Age", "600"))
            .insert_header(("Vary", "Origin"));
    }
    Ok(response.finish())
}

/// `GET /events/stream`.
pub async fn stream(
    req: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    // Seed 000's filter words choose its profile on WebSocket only: its
    // clients do not use SSE.
    let endpoint = Endpoint {
        profile: Some(state.settings.http.stream_profile),
        ..Endpoint::default()
    };
    open(req, state, endpoint).await
}

/// `GET /events` when the client asks for `text/event-stream` (an
/// `EventSource`); other requests read the log as JSON.
pub async fn stream_plain(
    req: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let endpoint = Endpoint {
        profile: Some(StreamProfile::Plain),
        ..Endpoint::default()
    };
    open(req, state, endpoint).await
}

/// Whether a request asks for an event stream (`Accept: text/event-stream`).
pub fn wants_event_stream(ctx: &actix_web::guard::GuardContext<'_>) -> bool {
    accepts_event_stream(&ctx.head().headers)
}

/// Whether a request's `Accept` names `text/event-stream`.
pub(super) fn accepts_event_stream(headers: &actix_web::http::header::HeaderMap) -> bool {
    headers
        .get_all(actix_web::http::header::ACCEPT)
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.to_ascii_lowercase().contains("text/event-stream"))
}

async fn open(
    req: HttpRequest,
    state: web::Data<AppState>,
    endpoint: Endpoint,
) -> Result<HttpResponse, ApiError> {
    if !state.settings.http.sse_enabled {
        return Err(ApiError::NotFound("SSE is disabled on this server".into()));
    }
    let cors = check_origin(req.head(), &state.settings.http.allowed_origins)?;
    let last_event_id = match req.headers().get("Last-Event-ID") {
        None => None,
        Some(value) => Some(
            value
                .to_str()
                .ok()
                .and_then(|v| v.trim().parse::<i64>().ok())
                .ok_or_else(|| ApiError::BadRequest("Last-Event-ID must be an event id".into()))?,
        ),
    };
    let params = StreamParams::parse(req.head())?;
    let profile = choose_profile(&params, &endpoint, state.settings.http.stream_profile)?;
    let Admission {
        scope,
        filter,
        start,
        slot,
        revocation,
        ..
    } = admit(
        req.head(),
        req.peer_addr().map(|a| a.ip()),
        &state,
        &endpoint,
        last_event_id,
    )?;
    let feed = state.service.open_feed(filter, start).revocable(revocation);
    feed.check_cursor()
        .map_err(|e| ApiError::CursorExpired(e.to_string()))?;
    tracing::debug!(scope = %scope.describe(), ?start, "sse connected");
    let http = &state.settings.http;
    let mut heartbeat = tokio::time::interval(Duration::from_secs(http.sse_heartbeat_secs.max(1)));
    heartbeat.reset();
    let stream = Stream {
        feed,
        profile,
        heartbeat,
        shutdown: state.shutdown.clone(),
        expires: scope.expires_at().map(|at| {
            tokio::time::Instant::now() + (at - chrono::Utc::now()).to_std().unwrap_or_default()
        }),
        opening: Some(format!("retry: {}\n\n", http.sse_retry_ms)),
        finished: false,
        _slot: slot,
    };
    let mut response = HttpResponse::Ok();
    response
        .content_type("text/event-stream")
        .insert_header(("Cache-Control", "no-cache"))
        // nginx and friends must not buffer an event stream.
        .insert_header(("X-Accel-Buffering", "no"));
    if let Some(origin) = cors {
        response
            .insert_header(("Access-Control-Allow-Origin", origin))
            .insert_header(("Vary", "Origin"));
    }
    Ok(response.streaming(futures_util::stream::unfold(stream, Stream::step)))
}

struct Stream {
    feed: Feed,
    profile: StreamProfile,
    heartbeat: tokio::time::Interval,
    shutdown: tokio_util::sync::CancellationToken,
    expires: Option<tokio::time::Instant>,
    /// The `retry:` line, sent first.
    opening: Option<String>,
    finished: bool,
    _slot: ConnectionSlot,
}

impl Stream {
    async fn step(mut self) -> Option<(Result<Bytes, Infallible>, Stream)> {
        if self.finished {
            return None;
        }
        if let Some(opening) = self.opening.take() {
            return Some((Ok(Bytes::from(opening)), self));
        }
        let expires = self.expires;
        let chunk = tokio::select! {
            biased;
            _ = self.shutdown.cancelled() => {
                self.finished = true;
                ": server shutting down\n\n".to_owned()
            }
            _ = sleep_until(expires), if expires.is_some() => {
                self.finished = true;
                error_event(&ApiError::TokenExpired)
            }
            frame = self.feed.next() => match frame {
                Ok(frame) => event(self.profile, &frame),
                Err(err) => {
                    self.finished = true;
                    error_event(&err.into())
                }
            },
            _ = self.heartbeat.tick() => ": keepalive\n\n".to_owned(),
        };
        Some((Ok(Bytes::from(chunk)), self))
    }
}

/// One event in SSE framing; the JSON envelope has no newlines.
fn event(profile: StreamProfile, frame: &Frame) -> String {
    let data = profile::event_text(profile, frame);
    let mut out = String::with_capacity(data.len() + 48);
    out.push_str("id: ");
    out.push_str(&frame.id.to_string());
    if let Some(name) = profile::sse_event_name(profile, frame) {
        out.push_str("\nevent: ");
        out.push_str(name);
    }
    out.push_str("\ndata: ");
    out.push_str(&data);
    out.push_str("\n\n");
    out
}

fn error_event(err: &ApiError) -> String {
    format!(
        "event: error\ndata: {}\n\n",
        json!({ "code": err.code(), "message": err.to_string() })
    )
}

async fn sleep_until(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}
