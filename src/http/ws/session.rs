//! One WebSocket connection, owning its socket.
//!
//! A single task per connection turns a loop over: bytes from the client
//! (decoded into frames and answered), events from its [`Feed`], a
//! heartbeat, its token's expiry and shutdown. Output goes into one buffer
//! that is written as soon as the socket takes it, so every frame that is
//! ready leaves in one write and nothing waits for more. The session pulls
//! events from its feed only while that buffer is small: beyond that the
//! hub's queue holds them, and past its limit the feed catches up from the
//! log, so a slow client costs bounded memory. Buffers are released while a
//! connection is idle; a client that takes no bytes for the client timeout
//! is dropped.

use std::{
    collections::HashSet,
    future::poll_fn,
    net::IpAddr,
    pin::Pin,
    task::Poll,
    time::{Duration, Instant},
};

use actix_codec::{Decoder, Encoder};
use actix_http::ws::{CloseCode, CloseReason, Codec, Frame, Item, Message, ProtocolError};
use actix_web::web;
use bytes::{Buf, Bytes, BytesMut};
use serde::Deserialize;
use serde_json::json;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};

use super::super::{
    authenticate,
    limits::{ConnectionSlot, TokenBucket},
    realtime::narrow,
    AppState,
};
use crate::{
    auth::Scope,
    domain::InstanceName,
    event::{format_timestamp, Frame as EventFrame, TopicSet},
    http::error::ApiError,
    hub::{feed::Feed, InstanceFilter},
};

/// Close code: nothing heard from the client for `client_timeout_secs`.
pub const CLOSE_HEARTBEAT: u16 = 4001;
/// Close code: the token expired; refresh it and resume.
pub const CLOSE_TOKEN_EXPIRED: u16 = 4010;
/// Close code: the `since` cursor is older than the retained log.
pub const CLOSE_CURSOR_EXPIRED: u16 = 4011;
/// Close code: rate limited.
pub const CLOSE_RATE_LIMITED: u16 = 4029;
/// Close code: the credential was revoked (its instance was deleted).
pub const CLOSE_REVOKED: u16 = 4003;

/// How long a closing message may take to get out to a client that is not
/// reading, before the socket is simply dropped.
const CLOSE_GRACE: Duration = Duration::from_secs(1);
/// Messages over the rate limit a client may send in a row before it is
/// closed rather than answered.
const FLOOD_TOLERANCE: u32 = 20;
/// Output bytes a session encodes ahead of the socket before it stops
/// pulling from its feed (the rest waits in the hub queue or the log).
const HIGH_WATER: usize = 64 * 1024;
/// Bytes read from the socket per read.
const READ_CHUNK: usize = 2048;

/// Why a session ends.
pub(super) enum End {
    /// The client closed or vanished: nothing more to send.
    Gone,
    Close(CloseCode, String),
    /// An error frame, then the close code that goes with it.
    Error(ApiError),
}

/// What one turn of the socket did.
enum Io {
    Read,
    Wrote,
    Closed,
}

pub(super) struct Session<T> {
    io: T,
    codec: Codec,
    read_buf: BytesMut,
    write_buf: BytesMut,
    /// Whether written bytes may still sit in a layer below (TLS) unflushed.
    flush_needed: bool,
    /// A message arriving in several frames: text or not, and what came.
    partial: Option<(bool, BytesMut)>,
    scope: Scope,
    /// Replay, then live; its cursor is where a resuming client continues.
    feed: Feed,
    /// Fires when the token behind this connection expires (tokens only;
    /// boxed so connections opened with a key do not carry a timer).
    expiry: Option<Pin<Box<tokio::time::Sleep>>>,
    messages: TokenBucket,
    /// Messages refused in a row for the rate limit.
    flooding: u32,
    state: web::Data<AppState>,
    /// The client's address, for the failed-authentication limit.
    peer: Option<IpAddr>,
    last_heard: Instant,
    /// When the socket last took bytes (or had none to take).
    last_progress: Instant,
    /// The place this connection holds under the connection limits.
    _slot: ConnectionSlot,
}

impl<T: AsyncRead + AsyncWrite + Unpin> Session<T> {
    #[allow(clippy::too_many_arguments)]
    pub(super) fn new(
        io: T,
        codec: Codec,
        early: BytesMut,
        scope: Scope,
        feed: Feed,
        state: web::Data<AppState>,
        peer: Option<IpAddr>,
        slot: ConnectionSlot,
    ) -> Session<T> {
        let limits = &state.settings.limits;
        let messages =
            TokenBucket::new(limits.client_messages_per_sec, limits.client_message_burst);
        Session {
            io,
            codec,
            read_buf: early,
            write_buf: BytesMut::new(),
            flush_needed: false,
            partial: None,
            expiry: expiry(&scope),
            scope,
            feed,
            messages,
            flooding: 0,
            state,
            peer,
            last_heard: Instant::now(),
            last_progress: Instant::now(),
            _slot: slot,
        }
    }

    pub(super) async fn run(mut self) {
        let http = &self.state.settings.http;
        let client_timeout = Duration::from_secs(http.client_timeout_secs.max(1));
        let mut heartbeat =
            tokio::time::interval(Duration::from_secs(http.ping_interval_secs.max(1)));
        heartbeat.tick().await;
        let shutdown = self.state.shutdown.clone();
        let revocation = self.feed.revocation().clone();
        let end = match self.start() {
            Err(end) => end,
            Ok(()) => loop {
                let room = self.write_buf.len() < HIGH_WATER;
                tokio::select! {
                    biased;
                    _ = shutdown.cancelled() => {
                        break End::Close(CloseCode::Away, "server shutting down".into());
                    }
                    _ = expired(&mut self.expiry) => {
                        break End::Error(ApiError::TokenExpired);
                    }
                    // Also while the client reads nothing (no room to pull).
                    _ = revocation.revoked() => break End::Error(ApiError::Revoked),
                    io = turn(&mut self.io, &mut self.read_buf, &mut self.write_buf, &mut self.flush_needed) => {
                        match io {
                            Io::Read => {
                                self.last_heard = Instant::now();
                                if let Err(end) = self.take_input() {
                                    break end;
                                }
                            }
                            Io::Wrote => self.last_progress = Instant::now(),
                            Io::Closed => break End::Gone,
                        }
                    }
                    frame = self.feed.next(), if room => match frame {
                        Ok(frame) => {
                            if self.write_buf.is_empty() {
                                self.last_progress = Instant::now();
                            }
                            self.push_event(&frame);
                            // Everything else that is ready goes in the same write.
                            while self.write_buf.len() < HIGH_WATER {
                                let Some(frame) = self.feed.try_next() else { break };
                                self.push_event(&frame);
                            }
                        }
                        Err(err) => break End::Error(err.into()),
                    },
                    _ = heartbeat.tick() => {
                        if self.last_heard.elapsed() >= client_timeout {
                            break End::Close(CloseCode::Other(CLOSE_HEARTBEAT), "heartbeat timeout".into());
                        }
                        if !self.write_buf.is_empty() && self.last_progress.elapsed() >= client_timeout {
                            // It has taken nothing for that long: it is stuck.
                            break End::Gone;
                        }
                        self.push(Message::Ping(Bytes::new()));
                        self.release_idle_buffers();
                    }
                }
            },
        };
        // Boxed: the closing sequence is a large future every idle
        // connection's task would otherwise carry.
        Box::pin(self.finish(end)).await;
    }

    /// What happens before the loop: a `since` beyond retention is refused,
    /// and bytes that came with the handshake are read.
    fn start(&mut self) -> Result<(), End> {
        if let Err(err) = self.feed.check_cursor() {
            return Err(End::Error(ApiError::CursorExpired(err.to_string())));
        }
        if !self.read_buf.is_empty() {
            self.take_input()?;
        }
        Ok(())
    }

    /// Sends what the end calls for and lets the socket go.
    async fn finish(mut self, end: End) {
        let close = match end {
            End::Gone => None,
            End::Close(code, reason) => Some((code, reason)),
            End::Error(err) => {
                self.push(Message::Text(error_frame(&err).into()));
                Some((close_code(&err), err.code().to_owned()))
            }
        };
        let Some((code, reason)) = close else { return };
        tracing::debug!(scope = %self.scope.describe(), ?code, %reason, cursor = self.feed.cursor(), "websocket closing");
        self.push(Message::Close(Some(CloseReason {
            code,
            description: Some(reason),
        })));
        let io = &mut self.io;
        let out = &mut self.write_buf;
        let _ = tokio::time::timeout(CLOSE_GRACE, async move {
            io.write_all_buf(out).await?;
            io.shutdown().await
        })
        .await;
    }

    /// Encodes a message into the output buffer.
    fn push(&mut self, message: Message) {
        // The codec only fails on an oversized control frame; the messages
        // pushed here are ours and small.
        if let Err(err) = self.codec.encode(message, &mut self.write_buf) {
            tracing::warn!(error = %err, "could not encode a frame");
        }
    }

    fn push_event(&mut self, frame: &EventFrame) {
        self.push(Message::Text(frame.json.clone()));
    }

    /// Gives back buffers a quiet connection does not need.
    fn release_idle_buffers(&mut self) {
        if self.read_buf.is_empty() && self.read_buf.capacity() > 0 {
            self.read_buf = BytesMut::new();
        }
        if self.write_buf.is_empty() && self.write_buf.capacity() > 0 && !self.flush_needed {
            self.write_buf = BytesMut::new();
        }
    }

    /// Decodes and handles every complete frame the client sent.
    fn take_input(&mut self) -> Result<(), End> {
        loop {
            match self.codec.decode(&mut self.read_buf) {
                Ok(Some(frame)) => self.on_frame(frame)?,
                Ok(None) => break,
                Err(ProtocolError::Overflow) => return Err(self.too_big()),
                Err(err) => {
                    return Err(End::Close(
                        CloseCode::Protocol,
                        format!("protocol error: {err}"),
                    ))
                }
            }
        }
        if self.read_buf.is_empty() {
            self.read_buf = BytesMut::new();
        }
        Ok(())
    }

    fn too_big(&self) -> End {
        End::Close(
            CloseCode::Size,
            format!(
                "message larger than {} bytes",
                self.state.settings.limits.max_message_size
            ),
        )
    }

    fn on_frame(&mut self, frame: Frame) -> Result<(), End> {
        match frame {
            Frame::Text(bytes) => self.on_message(true, bytes),
            Frame::Binary(bytes) => self.on_message(false, bytes),
            Frame::Continuation(item) => self.on_continuation(item),
            Frame::Ping(bytes) => {
                self.push(Message::Pong(bytes));
                Ok(())
            }
            Frame::Pong(_) => Ok(()),
            Frame::Close(_) => Err(End::Close(CloseCode::Normal, "goodbye".into())),
        }
    }

    /// Puts a message sent in several frames back together.
    fn on_continuation(&mut self, item: Item) -> Result<(), End> {
        let (first, last, bytes) = match item {
            Item::FirstText(bytes) => (Some(true), false, bytes),
            Item::FirstBinary(bytes) => (Some(false), false, bytes),
            Item::Continue(bytes) => (None, false, bytes),
            Item::Last(bytes) => (None, true, bytes),
        };
        let collected = match (first, self.partial.take()) {
            (Some(text), None) => (text, BytesMut::new()),
            (None, Some(partial)) => partial,
            (Some(_), Some(_)) => {
                return Err(End::Close(
                    CloseCode::Protocol,
                    "a new message began inside another".into(),
                ))
            }
            (None, None) => {
                return Err(End::Close(
                    CloseCode::Protocol,
                    "a continuation without a first frame".into(),
                ))
            }
        };
        let (text, mut collected) = collected;
        if collected.len() + bytes.len() > self.state.settings.limits.max_message_size {
            return Err(self.too_big());
        }
        collected.extend_from_slice(&bytes);
        if last {
            self.on_message(text, collected.freeze())
        } else {
            self.partial = Some((text, collected));
            Ok(())
        }
    }

    /// A whole message from the client.
    fn on_message(&mut self, text: bool, bytes: Bytes) -> Result<(), End> {
        if !self.messages.take() {
            self.flooding += 1;
            let err = ApiError::RateLimited(format!(
                "more than {} messages a second; this one was ignored",
                self.state.settings.limits.client_messages_per_sec
            ));
            if self.flooding > FLOOD_TOLERANCE {
                return Err(End::Error(err));
            }
            self.push(Message::Text(error_frame(&err).into()));
            return Ok(());
        }
        self.flooding = 0;
        if !text {
            self.push(Message::Text(
                error_frame(&ApiError::BadRequest(
                    "binary frames are not understood; send JSON text".into(),
                ))
                .into(),
            ));
            return Ok(());
        }
        let Ok(text) = std::str::from_utf8(&bytes) else {
            return Err(End::Close(
                CloseCode::Invalid,
                "text frames must be UTF-8".into(),
            ));
        };
        let reply = self.answer(text);
        self.push(Message::Text(reply.into()));
        Ok(())
    }

    /// The reply to a client message.
    fn answer(&mut self, text: &str) -> String {
        let message: ClientMessage = match serde_json::from_str(text) {
            Ok(message) => message,
            Err(err) => {
                return error_frame(&ApiError::BadRequest(format!("not valid JSON: {err}")))
            }
        };
        if message.kind.as_deref() == Some("ping") {
            return control("pong", json!({}));
        }
        match message.action.as_deref() {
            Some(action @ ("subscribe" | "unsubscribe")) => {
                match self.change_filter(action == "subscribe", &message) {
                    Ok(()) => control(&format!("{action}d"), self.describe_filter()),
                    Err(err) => error_frame(&err),
                }
            }
            Some("refresh") => match self.refresh(message.token.as_deref()) {
                Ok(expires_at) => control(
                    "refreshed",
                    json!({ "expiresAt": format_timestamp(expires_at), "filter": self.describe_filter() }),
                ),
                Err(err) => error_frame(&err),
            },
            _ => error_frame(&ApiError::BadRequest(
                "unknown message: send {\"type\":\"ping\"}, \
                 {\"action\":\"subscribe\"|\"unsubscribe\",\"instances\":[...],\"events\":[...]} \
                 or {\"action\":\"refresh\",\"token\":\"...\"}"
                    .into(),
            )),
        }
    }

    fn describe_filter(&self) -> serde_json::Value {
        let filter = self.feed.subscription().filter();
        let instances = match &filter.instances {
            InstanceFilter::All { except } if except.is_empty() => json!("*"),
            InstanceFilter::All { except } => json!({ "all_except": sorted(except) }),
            InstanceFilter::Only(names) => json!(sorted(names)),
        };
        let events = filter
            .topics
            .unwrap_or_else(TopicSet::all)
            .intersect(filter.allowed);
        json!({ "instances": instances, "events": events.names() })
    }

    /// Swaps in a fresh token before the current one expires. The new
    /// token's scope replaces the old one; what it may not see is dropped
    /// from the filter.
    fn refresh(&mut self, token: Option<&str>) -> Result<chrono::DateTime<chrono::Utc>, ApiError> {
        if !matches!(self.scope, Scope::Token(_)) {
            return Err(ApiError::BadRequest(
                "this connection was opened with a key, which does not expire".into(),
            ));
        }
        let token = token
            .filter(|t| !t.trim().is_empty())
            .ok_or_else(|| ApiError::BadRequest("'token' is required".into()))?;
        // The same path (and failure accounting) as a new connection.
        let scope = authenticate(&self.state, self.peer, Some(token), true)?;
        let Scope::Token(grant) = &scope else {
            return Err(ApiError::BadRequest(
                "refresh takes a token from POST /auth/token, not a key".into(),
            ));
        };
        let expires_at = grant.expires_at;
        let filter = narrow(self.feed.subscription().filter(), &scope);
        self.feed.subscription_mut().set_filter(filter);
        self.expiry = expiry(&scope);
        self.scope = scope;
        Ok(expires_at)
    }

    /// Applies a subscribe (add) or unsubscribe (remove) to the filter.
    fn change_filter(&mut self, add: bool, message: &ClientMessage) -> Result<(), ApiError> {
        if message.instances.is_none() && message.events.is_none() {
            return Err(ApiError::BadRequest(
                "name 'instances' and/or 'events' to change".into(),
            ));
        }
        let mut filter = self.feed.subscription().filter().clone();
        if let Some(raw) = &message.instances {
            let names = raw
                .iter()
                .map(|n| InstanceName::parse(n))
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| ApiError::BadRequest(e.to_string()))?;
            if let Some(other) = names.iter().find(|n| !self.scope.can_see(n)) {
                return Err(ApiError::Forbidden(format!(
                    "this credential may not watch instance '{other}'"
                )));
            }
            match (&mut filter.instances, add) {
                (InstanceFilter::All { except }, true) => names.iter().for_each(|n| {
                    except.remove(n);
                }),
                (InstanceFilter::All { except }, false) => except.extend(names),
                (InstanceFilter::Only(set), true) => set.extend(names),
                (InstanceFilter::Only(set), false) => names.iter().for_each(|n| {
                    set.remove(n);
                }),
            }
        }
        if let Some(raw) = &message.events {
            let topics = TopicSet::parse_list(raw.iter().map(String::as_str))
                .map_err(|e| ApiError::BadRequest(e.to_string()))?;
            filter.topics = match (filter.topics, add) {
                // No explicit choice means everything: adding changes nothing.
                (None, true) => None,
                (Some(current), true) => Some(current.union(topics)),
                (None, false) => Some(filter.allowed.without(topics)),
                (Some(current), false) => Some(current.without(topics)),
            };
        }
        self.feed.subscription_mut().set_filter(filter);
        Ok(())
    }
}

/// Sends a refusal (error frame and close) on a fresh WebSocket, then drops it.
pub(super) async fn refuse<T: AsyncWrite + Unpin>(mut io: T, mut codec: Codec, err: ApiError) {
    let mut out = BytesMut::new();
    let reason = CloseReason {
        code: close_code(&err),
        description: Some(err.code().to_owned()),
    };
    let encoded = codec
        .encode(Message::Text(error_frame(&err).into()), &mut out)
        .and_then(|()| codec.encode(Message::Close(Some(reason)), &mut out));
    if encoded.is_ok() {
        let _ = tokio::time::timeout(CLOSE_GRACE, async move {
            io.write_all_buf(&mut out).await?;
            io.shutdown().await
        })
        .await;
    }
}

/// One turn of the socket: writes what is pending (and flushes it), or
/// reads what arrived. The read goes through a stack buffer so an idle
/// connection holds no read buffer at all.
async fn turn<T: AsyncRead + AsyncWrite + Unpin>(
    io: &mut T,
    read_buf: &mut BytesMut,
    write_buf: &mut BytesMut,
    flush_needed: &mut bool,
) -> Io {
    poll_fn(|cx| {
        let mut wrote = false;
        while !write_buf.is_empty() {
            match Pin::new(&mut *io).poll_write(cx, write_buf) {
                Poll::Ready(Ok(0)) | Poll::Ready(Err(_)) => return Poll::Ready(Io::Closed),
                Poll::Ready(Ok(n)) => {
                    write_buf.advance(n);
                    *flush_needed = true;
                    wrote = true;
                }
                Poll::Pending => break,
            }
        }
        if write_buf.is_empty() && *flush_needed {
            match Pin::new(&mut *io).poll_flush(cx) {
                Poll::Ready(Ok(())) => *flush_needed = false,
                Poll::Ready(Err(_)) => return Poll::Ready(Io::Closed),
                Poll::Pending => {}
            }
        }
        if wrote {
            return Poll::Ready(Io::Wrote);
        }
        let mut chunk = [0u8; READ_CHUNK];
        let mut buf = ReadBuf::new(&mut chunk);
        match Pin::new(&mut *io).poll_read(cx, &mut buf) {
            Poll::Ready(Ok(())) if buf.filled().is_empty() => Poll::Ready(Io::Closed),
            Poll::Ready(Ok(())) => {
                read_buf.extend_from_slice(buf.filled());
                Poll::Ready(Io::Read)
            }
            Poll::Ready(Err(_)) => Poll::Ready(Io::Closed),
            Poll::Pending => Poll::Pending,
        }
    })
    .await
}

/// The close code that goes with an error, per the table in the module above.
fn close_code(err: &ApiError) -> CloseCode {
    match err {
        ApiError::TokenExpired => CloseCode::Other(CLOSE_TOKEN_EXPIRED),
        ApiError::CursorExpired(_) => CloseCode::Other(CLOSE_CURSOR_EXPIRED),
        ApiError::RateLimited(_) => CloseCode::Other(CLOSE_RATE_LIMITED),
        ApiError::Revoked => CloseCode::Other(CLOSE_REVOKED),
        ApiError::ConnectionLimit(_) | ApiError::Unavailable(_) => CloseCode::Again,
        ApiError::Internal(_) => CloseCode::Error,
        _ => CloseCode::Policy,
    }
}

/// A server-to-client control message: `{"type", "data", "timestamp"}`.
fn control(kind: &str, data: serde_json::Value) -> String {
    json!({ "type": kind, "data": data, "timestamp": format_timestamp(chrono::Utc::now()) })
        .to_string()
}

fn error_frame(err: &ApiError) -> String {
    control(
        "error",
        json!({ "code": err.code(), "message": err.to_string() }),
    )
}

/// A timer for when a scope's token expires (none for keys).
fn expiry(scope: &Scope) -> Option<Pin<Box<tokio::time::Sleep>>> {
    let at = scope.expires_at()?;
    let left = (at - chrono::Utc::now()).to_std().unwrap_or(Duration::ZERO);
    Some(Box::pin(tokio::time::sleep(left)))
}

/// Waits for the expiry timer, or forever when there is none.
async fn expired(expiry: &mut Option<Pin<Box<tokio::time::Sleep>>>) {
    match expiry {
        Some(sleep) => sleep.as_mut().await,
        None => std::future::pending().await,
    }
}

/// A message from the client.
#[derive(Deserialize)]
struct ClientMessage {
    action: Option<String>,
    #[serde(rename = "type")]
    kind: Option<String>,
    instances: Option<Vec<String>>,
    events: Option<Vec<String>>,
    token: Option<String>,
}

fn sorted(names: &HashSet<InstanceName>) -> Vec<&str> {
    let mut names: Vec<&str> = names.iter().map(|n| n.as_str()).collect();
    names.sort_unstable();
    names
}
