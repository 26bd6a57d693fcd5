//! The WebSocket endpoint: `/ws`, `/ws/{instance}`, an upgrade on `/`, and
//! seed 003's `/ws/feed`, `/ws/notifications`, `/ws/presence`, `/ws/calls`.
//!
//! WebSocket handshakes do not go through the actix-web handlers: the HTTP
//! layer hands every upgrade request, with its socket, to [`upgrade`]. That
//! checks the request, answers `101 Switching Protocols` and gives the socket
//! to a [`session::Session`] that owns it from then on. What clients send is
//! read by [`protocol::Reader`] (actix-http's frame codec, plus the RFC 6455
//! checks the codec leaves out); what the server sends is encoded by the
//! codec.
//!
//! Why not actix-ws: there every frame travels through a channel into the
//! HTTP layer's response body, which keeps two 8 KiB buffers per connection
//! for its whole life (twice our memory budget for an idle connection),
//! copies each frame twice, and can never drop a client that stopped
//! reading, because the body is not polled while its write buffer is full.
//! A session that owns its socket writes everything queued in one write,
//! holds buffers only while it has data, and cuts a stuck client off.
//!
//! A connection is admitted (credentials, filters, limits: see
//! [`super::realtime`]) before the 101 goes out, and an admitted one joins
//! the hub then too: every event committed after a client saw its handshake
//! succeed reaches it. A refusal still completes the handshake, so it can be
//! explained with an error frame before the close code, except in the `feed`
//! profile: there every refusal is answered to the handshake itself (a bad
//! credential `401`, `429` once its address is rate limited or the
//! credential holds all its streams, ...), because seed 003's client resets
//! its reconnect backoff whenever a socket opens and would otherwise retry
//! every two seconds forever.
//!
//! A client may offer subprotocols (`Sec-WebSocket-Protocol`); the server
//! selects `json` when it is offered (seed 002's client offers `chat` and
//! `json`), and none otherwise.
//!
//! # Frames
//!
//! Events are the envelope of DESIGN.md (`id`, `seq`, `event`, `instance`,
//! `timestamp`, `data`). Control messages (errors, acknowledgements, pongs)
//! are `{"type", "event", "instance", "data", "timestamp"}`, with `event`
//! equal to `type` and `instance` the path's instance or `null`: the fields
//! every seed's client reads on every frame. In the default profile a frame
//! with a `type` is a control message.
//!
//! Client messages: `{"type": "ping"}` (any other fields, such as seed
//! 003's `data` and `timestamp`, are ignored) → `pong`;
//! `{"action": "subscribe" | "unsubscribe", "instances": [...], "events":
//! [...]}` (seed 004's `"resource": "<instance>"` names an instance too) →
//! `subscribed`/`unsubscribed` with `{"instances": {"scope": "all" |
//! "all_except" | "only", "count": <listed>, "changed": <by this message>},
//! "events": [...]}`; `{"action": "refresh", "token": "..."}` → `refreshed`.
//! Named instances must exist (`NOT_FOUND`) and a filter lists at most
//! `limits.max_filter_instances` of them (`BAD_REQUEST`). Binary messages
//! are not understood: an error frame, then 1003.
//!
//! # Compatibility profiles
//!
//! A profile is the wire shape for clients written for another system (the
//! seeds). Chosen by `?profile=NAME`, else by the path, else `sms-gateway`
//! when the `events` filter uses seed 000's own words (`incoming`,
//! `outgoing`, `modem_status_update`, `gnss_position_report`), else
//! `http.stream_profile` (default `switchboard`).
//!
//! | profile | for | what changes |
//! | --- | --- | --- |
//! | `switchboard` | everyone | nothing: the envelope above |
//! | `sms-gateway` | seed 000 | every frame also has `event_type`: `incoming`, `outgoing`, `delivery`, `modem_status_update`, `gnss_position_report`, or the kind |
//! | `feed` | seed 003; `/ws/feed`, `/ws/notifications`, `/ws/presence` (presence, status), `/ws/calls` (calls) | every event also has `type`: `presence_update`, `status_change`, `call_started`, `call_ended`, or the kind; bad credentials refused at the handshake |
//! | `plain` | seed 002's `EventSource('/events')` | SSE events have no `event:` line, so `onmessage` sees all of them |
//!
//! # Close codes
//!
//! | code | meaning | should the client reconnect? |
//! | --- | --- | --- |
//! | 1000 | normal closure (the client asked; its own code is echoed) | if it wants |
//! | 1001 | server shutting down | yes, with `since=<last id>` |
//! | 1002 | the client broke RFC 6455: a reserved opcode or reserved bit, an unmasked frame, a fragmented or oversized (> 125 bytes) control frame, continuation frames out of order, an invalid close code | after fixing the client |
//! | 1003 | a binary message (only JSON text is understood) | after fixing the client |
//! | 1007 | a text message (checked fragment by fragment) or a close reason was not UTF-8 | after fixing the client |
//! | 1008 | policy: `AUTH_FAILED`, `PERMISSION_DENIED`, `NOT_FOUND`, `BAD_REQUEST` | only after fixing the request |
//! | 1009 | a message (or a frame header's announced length) was larger than `limits.max_message_size` | yes, without that message |
//! | 1011 | server error | yes, with backoff and `since` |
//! | 1013 | `CONNECTION_LIMIT` | yes, with backoff |
//! | 4001 | heartbeat timeout: nothing heard for `client_timeout_secs` | yes, with `since` |
//! | 4002 | not reading: what the server owed at a heartbeat was not all read within `client_timeout_secs`, or more than 256 KiB of replies were left unread | yes, with `since`, and read |
//! | 4003 | `CREDENTIAL_REVOKED`: the instance the key or token was for was deleted | no: that credential no longer works |
//! | 4010 | `TOKEN_EXPIRED` | after getting a new token, with `since` |
//! | 4011 | `CURSOR_EXPIRED`: `since` is older than the retained log | after resynchronizing, without `since` |
//! | 4029 | `RATE_LIMITED`: too many failed authentications, or messages and Pings over `limits.client_messages_per_sec` more than 20 times in a row | after a pause |
//!
//! A client that falls behind but reads is not closed: it is caught up from
//! the log at its own pace (see [`crate::hub::feed`]). A Ping is answered
//! with one Pong; Pings that arrive before it is sent replace it.

mod liveness;
pub mod protocol;
mod session;

use std::time::Duration;

use actix_codec::Framed;
use actix_http::{h1, Request};
use actix_service::{fn_service, ServiceFactory};
use actix_web::{http::StatusCode, web, HttpRequest, HttpResponse, ResponseError};
use bytes::BytesMut;
use serde_json::json;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};

use super::{
    realtime::{admit, check_origin, choose_profile, credentials, Endpoint, StreamParams},
    AppState,
};
use crate::{
    domain::{StreamProfile, Topic, TopicSet},
    http::error::ApiError,
};
use session::{Session, Voice};

pub use session::{
    CLOSE_CURSOR_EXPIRED, CLOSE_HEARTBEAT, CLOSE_RATE_LIMITED, CLOSE_REVOKED, CLOSE_STUCK,
    CLOSE_TOKEN_EXPIRED, MAX_REPLY_BACKLOG,
};

/// How long a handshake answer or a refusal may take to get out.
const HANDSHAKE_GRACE: Duration = Duration::from_secs(5);

/// `GET /` without an upgrade: a pointer to the API.
pub async fn root() -> HttpResponse {
    HttpResponse::Ok().json(json!({
        "name": "switchboard",
        "version": env!("CARGO_PKG_VERSION"),
        "websocket": "/ws",
        "sse": "/events/stream",
        "events": "/events",
        "health": "/health",
    }))
}

/// `GET /ws` without an upgrade (upgrades never reach the handlers).
pub async fn not_an_upgrade(_req: HttpRequest) -> Result<HttpResponse, ApiError> {
    Err(ApiError::BadRequest(
        "this endpoint speaks WebSocket: send an Upgrade request".into(),
    ))
}

/// The service the HTTP layer gives upgrade requests to, with their socket.
pub fn upgrade<T>(
    state: web::Data<AppState>,
) -> impl ServiceFactory<
    (Request, Framed<T, h1::Codec>),
    Config = (),
    Response = (),
    Error = actix_web::Error,
    InitError = (),
>
where
    T: AsyncRead + AsyncWrite + Unpin + 'static,
{
    fn_service(move |(req, framed): (Request, Framed<T, h1::Codec>)| {
        let state = state.clone();
        async move {
            accept(state, req, framed).await;
            Ok::<(), actix_web::Error>(())
        }
    })
}

/// Seed 003's endpoints: the `feed` profile, and the events each stands for
/// (`None`: every event). These names are taken: an instance called `feed`
/// is watched through `/ws?instances=feed`.
const FEED_ENDPOINTS: [(&str, Option<&[Topic]>); 4] = [
    ("feed", None),
    ("notifications", None),
    ("presence", Some(&[Topic::Presence, Topic::Status])),
    ("calls", Some(&[Topic::Call])),
];

/// What a WebSocket path stands for: `/` and `/ws` every instance the
/// credential sees, `/ws/{instance}` one, and seed 003's endpoints.
fn route(path: &str) -> Result<Endpoint, ApiError> {
    match path.trim_end_matches('/') {
        "" | "/ws" => Ok(Endpoint::default()),
        other => match other.strip_prefix("/ws/") {
            Some(name) if !name.contains('/') => {
                let feed = FEED_ENDPOINTS
                    .iter()
                    .find(|(endpoint, _)| *endpoint == name);
                Ok(match feed {
                    Some((_, topics)) => Endpoint {
                        instance: None,
                        profile: Some(StreamProfile::Feed),
                        topics: topics.map(TopicSet::of),
                    },
                    None => Endpoint {
                        instance: Some(name.to_owned()),
                        ..Endpoint::default()
                    },
                })
            }
            _ => Err(ApiError::NotFound(format!(
                "no WebSocket endpoint at {}",
                super::truncate(path, 200)
            ))),
        },
    }
}

async fn accept<T>(state: web::Data<AppState>, req: Request, framed: Framed<T, h1::Codec>)
where
    T: AsyncRead + AsyncWrite + Unpin + 'static,
{
    let head = req.head();
    let peer = req.peer_addr().map(|a| a.ip());
    let parts = framed.into_parts();
    let mut io = parts.io;
    // Bytes the client sent right after its request (a first frame, say),
    // in a buffer of their size: the HTTP layer's is 8 KiB.
    let early = if parts.read_buf.is_empty() {
        BytesMut::new()
    } else {
        BytesMut::from(&parts.read_buf[..])
    };
    drop(parts.read_buf);
    drop(parts.write_buf);

    let checked = route(head.uri.path()).and_then(|endpoint| {
        if !state.settings.http.websocket_enabled {
            return Err(ApiError::NotFound(
                "WebSocket is disabled on this server".into(),
            ));
        }
        if head.method != actix_web::http::Method::GET {
            return Err(ApiError::MethodNotAllowed(
                "a WebSocket upgrade is a GET request".into(),
            ));
        }
        actix_http::ws::verify_handshake(head)
            .map_err(|e| ApiError::BadRequest(format!("not a valid WebSocket handshake: {e}")))?;
        check_origin(head, &state.settings.http.allowed_origins)?;
        let params = StreamParams::parse(head)?;
        let profile = choose_profile(&params, &endpoint, state.settings.http.stream_profile)?;
        if profile == StreamProfile::Feed {
            // Seed 003's client resets its reconnect backoff whenever a
            // socket opens: refused after the upgrade, a bad token would
            // reconnect every two seconds forever. Refused here, it backs
            // off and gives up.
            credentials(
                head,
                super::client_address(&state, &head.headers, peer),
                &state,
                &params,
            )?;
        }
        Ok((endpoint, profile))
    });
    let (endpoint, profile) = match checked {
        Ok(checked) => checked,
        Err(err) => {
            let _ = tokio::time::timeout(HANDSHAKE_GRACE, http_error(&mut io, &err)).await;
            return;
        }
    };
    let Some(key) = head.headers.get(actix_web::http::header::SEC_WEBSOCKET_KEY) else {
        return;
    };
    let accept_key = actix_http::ws::hash_key(key.as_bytes());
    // Admitted clients join the hub before the 101 goes out, so every event
    // committed after a client saw its handshake succeed reaches it.
    let admitted = admit(head, peer, &state, &endpoint, None).map(|admission| {
        tracing::debug!(scope = %admission.scope.describe(), start = ?admission.start, %profile, "websocket admitted");
        let feed = state
            .service
            .open_feed(admission.filter, admission.start)
            .revocable(admission.revocation);
        (admission.scope, admission.slot, feed, admission.client)
    });
    // The feed profile's client would take an opened socket for success
    // and reset its backoff (see above): every refusal is the handshake's.
    if profile == StreamProfile::Feed {
        if let Err(err) = &admitted {
            tracing::debug!(code = err.code(), "feed websocket refused at the handshake");
            let _ = tokio::time::timeout(HANDSHAKE_GRACE, http_error(&mut io, err)).await;
            return;
        }
    }
    let subprotocol = match subprotocol(&head.headers) {
        Some(chosen) => format!("sec-websocket-protocol: {chosen}\r\n"),
        None => String::new(),
    };
    let response = format!(
        "HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\nconnection: upgrade\r\n\
         sec-websocket-accept: {}\r\n{subprotocol}\r\n",
        String::from_utf8_lossy(&accept_key)
    );
    let sent = tokio::time::timeout(HANDSHAKE_GRACE, io.write_all(response.as_bytes())).await;
    if !matches!(sent, Ok(Ok(()))) {
        return;
    }

    let voice = Voice {
        profile,
        instance: endpoint.instance,
    };
    let sessions = state.sessions.clone();
    match admitted {
        Ok((scope, slot, feed, client)) => {
            let session = Session::new(io, early, voice, scope, feed, state.clone(), client, slot);
            actix_rt::spawn(sessions.track_future(session.run()));
        }
        Err(err) => {
            tracing::debug!(code = err.code(), "websocket refused");
            actix_rt::spawn(sessions.track_future(session::refuse(io, voice, err)));
        }
    }
}

/// Answers a handshake that cannot become a WebSocket with the same JSON
/// error the REST API gives, then closes.
async fn http_error<T: AsyncWrite + Unpin>(io: &mut T, err: &ApiError) -> std::io::Result<()> {
    let status: StatusCode = err.status_code();
    let body = json!({ "error": { "code": err.code(), "message": err.to_string() } }).to_string();
    let mut out = BytesMut::with_capacity(160 + body.len());
    out.extend_from_slice(
        format!(
            "HTTP/1.1 {} {}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\
             {}connection: close\r\n\r\n",
            status.as_u16(),
            status.canonical_reason().unwrap_or(""),
            body.len(),
            match err {
                ApiError::RateLimited(_) => "retry-after: 60\r\n",
                ApiError::ConnectionLimit(_) | ApiError::ConnectionQuota(_) => "retry-after: 2\r\n",
                _ => "",
            }
        )
        .as_bytes(),
    );
    out.extend_from_slice(body.as_bytes());
    io.write_all(&out).await?;
    io.shutdown().await
}

/// The subprotocol the server speaks, `json`, when the client offers it
/// among its `Sec-WebSocket-Protocol` values. A client that offers
/// subprotocols expects one back (browsers fail the handshake otherwise),
/// and one may only be chosen from the offer (RFC 6455 4.2.2), so a client
/// offering others gets none and decides for itself.
fn subprotocol(headers: &actix_web::http::header::HeaderMap) -> Option<&'static str> {
    headers
        .get_all(actix_web::http::header::SEC_WEBSOCKET_PROTOCOL)
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|offered| offered.trim() == "json")
        .then_some("json")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_is_chosen_only_when_offered() {
        use actix_web::http::header::{HeaderMap, HeaderValue, SEC_WEBSOCKET_PROTOCOL};
        let offer = |values: &[&'static str]| {
            let mut headers = HeaderMap::new();
            for value in values {
                headers.append(SEC_WEBSOCKET_PROTOCOL, HeaderValue::from_static(value));
            }
            subprotocol(&headers)
        };
        assert_eq!(offer(&["chat, json"]), Some("json"));
        assert_eq!(offer(&["chat", "json"]), Some("json"));
        assert_eq!(offer(&["chat"]), None);
        assert_eq!(offer(&["jsonx"]), None);
        assert_eq!(offer(&[]), None);
    }

    #[test]
    fn websocket_paths_name_their_instance_or_their_profile() {
        assert_eq!(route("/").expect("root"), Endpoint::default());
        assert_eq!(route("/ws").expect("ws"), Endpoint::default());
        assert_eq!(route("/ws/").expect("ws/"), Endpoint::default());
        assert_eq!(
            route("/ws/alpha").expect("one").instance.as_deref(),
            Some("alpha")
        );
        let feed = route("/ws/feed").expect("feed");
        assert_eq!(
            (feed.instance, feed.profile, feed.topics),
            (None, Some(StreamProfile::Feed), None)
        );
        assert_eq!(
            route("/ws/calls").expect("calls").topics,
            Some(TopicSet::of(&[Topic::Call]))
        );
        assert!(route("/ws/a/b").is_err());
        assert!(route("/events").is_err());
    }
}
