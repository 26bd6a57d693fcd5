//! One WebSocket connection, owning its socket.
//!
//! A single task per connection turns a loop over: bytes from the client
//! (decoded by [`Reader`] into messages and answered), events from its
//! [`Feed`], a heartbeat, its token's expiry and shutdown. Output goes into
//! one buffer that is written as soon as the socket takes it, so every frame
//! that is ready leaves in one write and nothing waits for more.
//!
//! What a client can make the server owe it is bounded, whether it reads or
//! not:
//! - events are pulled from the feed only while the buffer is small; beyond
//!   that the hub's queue holds them, and past its limit the feed catches up
//!   from the log;
//! - a Ping is answered by one pending Pong, which a newer Ping replaces
//!   while it has not been sent (RFC 6455 §5.5.3 allows answering only the
//!   most recent), and Pings count against the message rate limit;
//! - replies to messages are rate limited, and a client that lets more than
//!   [`MAX_REPLY_BACKLOG`] bytes of them pile up unread is closed;
//! - a client must take every byte it was owed at a heartbeat within the
//!   client timeout: reading a trickle does not count as keeping up.
//!
//! Buffers are released while a connection is idle.

use std::{
    future::poll_fn,
    net::IpAddr,
    pin::Pin,
    sync::{atomic::Ordering, Arc},
    task::Poll,
    time::Duration,
};

use actix_codec::Encoder;
use actix_http::ws::{CloseCode, CloseReason, Codec, Message};
use actix_web::web;
use bytes::{Buf, Bytes, BytesMut};
use serde_json::json;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};

use super::{
    super::{
        authenticate,
        limits::{ConnectionSlot, TokenBucket},
        realtime::{check_filter_instances, narrow, too_many_instances},
        AppState,
    },
    liveness::{Liveness, Verdict},
    protocol::{parse_client_message, ClientMessage, Incoming, Reader},
};
mod requests;

use crate::{
    auth::Scope,
    domain::{InstanceName, StreamProfile},
    event::{format_timestamp, profile, Frame as EventFrame, TopicSet},
    http::error::ApiError,
    hub::{feed::Feed, Hub, InstanceFilter},
};

/// Close code: nothing heard from the client for `client_timeout_secs`.
pub const CLOSE_HEARTBEAT: u16 = 4001;
/// Close code: the client stopped taking what the server owes it.
pub const CLOSE_STUCK: u16 = 4002;
/// Close code: the credential was revoked (its instance was deleted).
pub const CLOSE_REVOKED: u16 = 4003;
/// Close code: the token expired; refresh it and resume.
pub const CLOSE_TOKEN_EXPIRED: u16 = 4010;
/// Close code: the `since` cursor is older than the retained log.
pub const CLOSE_CURSOR_EXPIRED: u16 = 4011;
/// Close code: rate limited.
pub const CLOSE_RATE_LIMITED: u16 = 4029;

/// How long a closing message may take to get out to a client that is not
/// reading, before the socket is simply dropped.
const CLOSE_GRACE: Duration = Duration::from_secs(1);
/// How long, after its close frame went out, the server keeps reading (and
/// discarding) what the client still sends before it drops the socket. A
/// socket dropped with unread input is reset, and a reset can destroy the
/// close frame before the client reads it.
const LINGER: Duration = Duration::from_secs(2);
/// Messages (and Pings) over the rate limit a client may send in a row
/// before it is closed rather than answered.
const FLOOD_TOLERANCE: u32 = 20;
/// Output bytes a session encodes ahead of the socket before it stops
/// pulling from its feed (the rest waits in the hub queue or the log).
const HIGH_WATER: usize = 64 * 1024;
/// Reply bytes (answers to messages, pongs) a client may leave unread
/// before it counts as not reading. Replies are rate limited, so a client
/// that reads at all stays far below it.
pub const MAX_REPLY_BACKLOG: usize = 256 * 1024;
/// Bytes read from the socket per read.
const READ_CHUNK: usize = 2048;

/// Why a session ends.
pub(super) enum End {
    /// The client closed or vanished: nothing more to send.
    Gone,
    Close(CloseCode, String),
    /// An error frame, then the close code that goes with it.
    Error(ApiError),
    /// An error frame, then the given close code.
    ErrorWith(ApiError, CloseCode),
}

/// What one turn of the socket did.
enum Io {
    Read,
    Wrote,
    Closed,
}

/// How a connection's frames look and what its control messages say.
#[derive(Debug, Clone)]
pub(super) struct Voice {
    pub profile: StreamProfile,
    /// The instance named by the path, repeated on control messages.
    pub instance: Option<String>,
}

impl Voice {
    fn control(&self, kind: &str, data: serde_json::Value) -> String {
        profile::control(self.profile, kind, self.instance.as_deref(), data)
    }

    fn error(&self, err: &ApiError) -> String {
        self.control(
            "error",
            json!({ "code": err.code(), "message": err.to_string() }),
        )
    }
}

/// This session's share of the hub's `owed_bytes` gauge, given back on drop.
struct Owed {
    hub: Arc<Hub>,
    counted: usize,
}

impl Owed {
    fn set(&mut self, now: usize) {
        let gauge = &self.hub.stats().owed_bytes;
        if now > self.counted {
            gauge.fetch_add(now - self.counted, Ordering::Relaxed);
        } else {
            gauge.fetch_sub(self.counted - now, Ordering::Relaxed);
        }
        self.counted = now;
    }
}

impl Drop for Owed {
    fn drop(&mut self) {
        self.set(0);
    }
}

pub(super) struct Session<T> {
    io: T,
    /// Encodes the server's frames.
    codec: Codec,
    /// Decodes and checks the client's.
    reader: Reader,
    read_buf: BytesMut,
    write_buf: BytesMut,
    /// Whether written bytes may still sit in a layer below (TLS) unflushed.
    flush_needed: bool,
    /// Bytes the socket has taken, ever: with `write_buf`, how far the
    /// client must read to have everything it was owed.
    written: u64,
    /// Whether the client is still there and still reading.
    liveness: Liveness,
    /// Reply bytes pushed since the buffer was last empty.
    reply_backlog: usize,
    /// The answer to the newest Ping, not yet encoded.
    pending_pong: Option<Bytes>,
    voice: Voice,
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
    owed: Owed,
    /// The place this connection holds under the connection limits.
    _slot: ConnectionSlot,
}

impl<T: AsyncRead + AsyncWrite + Unpin> Session<T> {
    #[allow(clippy::too_many_arguments)]
    pub(super) fn new(
        io: T,
        early: BytesMut,
        voice: Voice,
        scope: Scope,
        feed: Feed,
        state: web::Data<AppState>,
        peer: Option<IpAddr>,
        slot: ConnectionSlot,
    ) -> Session<T> {
        let limits = &state.settings.limits;
        let messages =
            TokenBucket::new(limits.client_messages_per_sec, limits.client_message_burst);
        let owed = Owed {
            hub: state.service.hub().clone(),
            counted: 0,
        };
        Session {
            io,
            codec: Codec::new(),
            reader: Reader::new(limits.max_message_size),
            read_buf: early,
            write_buf: BytesMut::new(),
            flush_needed: false,
            written: 0,
            liveness: Liveness::new(Duration::from_secs(
                state.settings.http.client_timeout_secs.max(1),
            )),
            reply_backlog: 0,
            pending_pong: None,
            voice,
            expiry: expiry(&scope),
            scope,
            feed,
            messages,
            flooding: 0,
            state,
            peer,
            owed,
            _slot: slot,
        }
    }

    pub(super) async fn run(mut self) {
        let http = &self.state.settings.http;
        let mut heartbeat =
            tokio::time::interval(Duration::from_secs(http.ping_interval_secs.max(1)));
        heartbeat.tick().await;
        let shutdown = self.state.shutdown.clone();
        let revocation = self.feed.revocation().clone();
        let end = match self.start() {
            Err(end) => end,
            Ok(()) => loop {
                if self.write_buf.len() < HIGH_WATER {
                    if let Some(pong) = self.pending_pong.take() {
                        self.push_reply(Message::Pong(pong));
                    }
                }
                self.owed.set(self.write_buf.len());
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
                    io = turn(&mut self.io, &mut self.read_buf, &mut self.write_buf, &mut self.flush_needed, &mut self.written) => {
                        match io {
                            Io::Read => {
                                self.liveness.heard();
                                if let Err(end) = self.take_input() {
                                    break end;
                                }
                                if self.reply_backlog > MAX_REPLY_BACKLOG {
                                    break stuck("replies left unread");
                                }
                            }
                            Io::Wrote => {
                                if self.write_buf.is_empty() {
                                    self.reply_backlog = 0;
                                }
                            }
                            Io::Closed => break End::Gone,
                        }
                    }
                    frame = self.feed.next(), if room => match frame {
                        Ok(frame) => {
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
                        match self.liveness.check(self.written) {
                            Verdict::Alive => {}
                            Verdict::Silent => {
                                break End::Close(CloseCode::Other(CLOSE_HEARTBEAT), "heartbeat timeout".into());
                            }
                            Verdict::Stuck => {
                                break stuck("output owed was not read within the client timeout");
                            }
                        }
                        self.push(Message::Ping(Bytes::new()));
                        self.liveness.owe(self.written, self.write_buf.len());
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

    /// Sends what the end calls for, gives back the connection's place and
    /// subscription, and lets the socket go once the client has had its
    /// chance to read the close.
    async fn finish(mut self, end: End) {
        let close = match end {
            End::Gone => None,
            End::Close(code, reason) => Some((code, reason)),
            End::Error(err) => {
                let code = close_code(&err);
                self.push(Message::Text(self.voice.error(&err).into()));
                Some((code, err.code().to_owned()))
            }
            End::ErrorWith(err, code) => {
                self.push(Message::Text(self.voice.error(&err).into()));
                Some((code, err.code().to_owned()))
            }
        };
        let Some((code, reason)) = close else { return };
        tracing::debug!(scope = %self.scope.describe(), ?code, %reason, cursor = self.feed.cursor(), "websocket closing");
        self.push(Message::Close(Some(CloseReason {
            code,
            description: Some(reason),
        })));
        let Session {
            mut io,
            mut write_buf,
            feed,
            _slot,
            owed,
            ..
        } = self;
        drop((feed, _slot, owed));
        let sent = tokio::time::timeout(CLOSE_GRACE, async {
            io.write_all_buf(&mut write_buf).await?;
            io.shutdown().await
        })
        .await;
        if matches!(sent, Ok(Ok(()))) {
            drop(write_buf);
            linger(io).await;
        }
    }

    /// Encodes a message into the output buffer.
    fn push(&mut self, message: Message) {
        // The codec only fails on an oversized control frame; the messages
        // pushed here are ours and small.
        if let Err(err) = self.codec.encode(message, &mut self.write_buf) {
            tracing::warn!(error = %err, "could not encode a frame");
        }
    }

    /// Encodes an answer to the client, counting it in the reply backlog.
    fn push_reply(&mut self, message: Message) {
        let before = self.write_buf.len();
        self.push(message);
        self.reply_backlog += self.write_buf.len() - before;
    }

    fn push_event(&mut self, frame: &EventFrame) {
        let text = profile::event_text(self.voice.profile, frame);
        self.push(Message::Text(text));
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

    /// Decodes and handles every complete message the client sent.
    fn take_input(&mut self) -> Result<(), End> {
        loop {
            match self.reader.next(&mut self.read_buf) {
                Ok(Some(incoming)) => self.on_incoming(incoming)?,
                Ok(None) => break,
                Err(violation) => return Err(End::Close(violation.code, violation.reason)),
            }
        }
        if self.read_buf.is_empty() {
            self.read_buf = BytesMut::new();
        }
        Ok(())
    }

    fn on_incoming(&mut self, incoming: Incoming) -> Result<(), End> {
        match incoming {
            Incoming::Text(text) => {
                if self.admit_message()? {
                    let reply = self.answer(&text);
                    self.push_reply(Message::Text(reply.into()));
                }
                Ok(())
            }
            Incoming::Binary(_) => Err(End::ErrorWith(
                ApiError::BadRequest("binary frames are not understood; send JSON text".into()),
                CloseCode::Unsupported,
            )),
            Incoming::Ping(payload) => {
                // Only the newest Ping is answered; it is counted like a
                // message so a flood of them is closed, not queued.
                self.pending_pong = Some(payload);
                self.admit_message()?;
                Ok(())
            }
            Incoming::Pong(_) => Ok(()),
            Incoming::Close(reason) => {
                // The closing handshake echoes the client's code.
                let code = reason.map_or(CloseCode::Normal, |r| r.code);
                Err(End::Close(code, String::new()))
            }
        }
    }

    /// Spends a token of the message rate limit. `Ok(false)`: over the
    /// limit, answered with RATE_LIMITED; an `Err` once the client keeps
    /// flooding.
    fn admit_message(&mut self) -> Result<bool, End> {
        if self.messages.take() {
            self.flooding = 0;
            return Ok(true);
        }
        self.flooding += 1;
        let err = ApiError::RateLimited(format!(
            "more than {} messages a second; this one was ignored",
            self.state.settings.limits.client_messages_per_sec
        ));
        if self.flooding > FLOOD_TOLERANCE {
            return Err(End::Error(err));
        }
        let reply = self.voice.error(&err);
        self.push_reply(Message::Text(reply.into()));
        Ok(false)
    }
}

/// The end of a client that does not take what it is owed.
fn stuck(why: &str) -> End {
    End::Close(CloseCode::Other(CLOSE_STUCK), format!("not reading: {why}"))
}

/// Reads and discards what a closed connection's client still sends, until
/// it closes its side or [`LINGER`] has passed, so the socket is not reset
/// under the close frame it has yet to read.
async fn linger<T: AsyncRead + Unpin>(mut io: T) {
    let mut sink = [0u8; READ_CHUNK];
    let _ = tokio::time::timeout(LINGER, async {
        while matches!(io.read(&mut sink).await, Ok(n) if n > 0) {}
    })
    .await;
}

/// Sends a refusal (error frame and close) on a fresh WebSocket, then drops it.
pub(super) async fn refuse<T: AsyncRead + AsyncWrite + Unpin>(
    mut io: T,
    voice: Voice,
    err: ApiError,
) {
    let mut codec = Codec::new();
    let mut out = BytesMut::new();
    let reason = CloseReason {
        code: close_code(&err),
        description: Some(err.code().to_owned()),
    };
    let encoded = codec
        .encode(Message::Text(voice.error(&err).into()), &mut out)
        .and_then(|()| codec.encode(Message::Close(Some(reason)), &mut out));
    if encoded.is_ok() {
        let sent = tokio::time::timeout(CLOSE_GRACE, async {
            io.write_all_buf(&mut out).await?;
            io.shutdown().await
        })
        .await;
        if matches!(sent, Ok(Ok(()))) {
            linger(io).await;
        }
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
    written: &mut u64,
) -> Io {
    poll_fn(|cx| {
        let mut wrote = false;
        while !write_buf.is_empty() {
            match Pin::new(&mut *io).poll_write(cx, write_buf) {
                Poll::Ready(Ok(0)) | Poll::Ready(Err(_)) => return Poll::Ready(Io::Closed),
                Poll::Ready(Ok(n)) => {
                    write_buf.advance(n);
                    *written += n as u64;
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
        ApiError::Revoked => CloseCode::Other(CLOSE_REVOKED),
        ApiError::CursorExpired(_) => CloseCode::Other(CLOSE_CURSOR_EXPIRED),
        ApiError::RateLimited(_) => CloseCode::Other(CLOSE_RATE_LIMITED),
        ApiError::ConnectionLimit(_) | ApiError::ConnectionQuota(_) | ApiError::Unavailable(_) => {
            CloseCode::Again
        }
        ApiError::Internal(_) => CloseCode::Error,
        _ => CloseCode::Policy,
    }
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
