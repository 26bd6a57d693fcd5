//! RFC 6455 on the wire: hand-built frames on a plain TCP socket, each
//! malformed sequence the RFC says must fail the connection answered with
//! the close code it names, and well-formed but unusual ones (fragments, a
//! character split between them, control frames in between) accepted. Then
//! two WebSocket libraries nobody here wrote (Python's `websockets` and
//! `websocket-client`) talk to the server as a second opinion.

use std::time::Duration;

use serde_json::Value;
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};

use crate::helpers::*;
use crate::seeds::run_python;

/// A WebSocket client that sends whatever bytes it is told to.
pub struct RawWs {
    pub stream: TcpStream,
    /// Bytes read but not yet taken as frames.
    buf: Vec<u8>,
}

/// The opening request of a WebSocket handshake for `path`.
pub fn handshake_request(path: &str) -> String {
    format!(
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
}

/// A client frame: `first` is the FIN/RSV/opcode byte; masked unless told.
pub fn frame(first: u8, payload: &[u8], masked: bool) -> Vec<u8> {
    let mask = [0x37, 0xFA, 0x21, 0x3D];
    let bit = if masked { 0x80 } else { 0 };
    let mut out = vec![first];
    match payload.len() {
        n if n < 126 => out.push(bit | n as u8),
        n if n <= 0xFFFF => {
            out.push(bit | 126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(bit | 127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    if masked {
        out.extend_from_slice(&mask);
        out.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    } else {
        out.extend_from_slice(payload);
    }
    out
}

/// A close frame's payload.
pub fn close_payload(code: u16, reason: &[u8]) -> Vec<u8> {
    let mut out = code.to_be_bytes().to_vec();
    out.extend_from_slice(reason);
    out
}

impl RawWs {
    /// Connects and completes the handshake; panics unless it is a 101.
    pub async fn connect(app: &TestApp, path: &str) -> RawWs {
        let stream = TcpStream::connect(("127.0.0.1", app.port))
            .await
            .expect("connect");
        Self::upgrade(stream, path).await
    }

    /// Completes the handshake on a connected socket.
    pub async fn upgrade(mut stream: TcpStream, path: &str) -> RawWs {
        stream
            .write_all(handshake_request(path).as_bytes())
            .await
            .expect("send the handshake");
        let mut buf = Vec::new();
        let mut chunk = [0u8; 1024];
        let end = loop {
            if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break end;
            }
            let n = tokio::time::timeout(WAIT, stream.read(&mut chunk))
                .await
                .expect("a handshake answer in time")
                .expect("read");
            assert!(n > 0, "closed during the handshake");
            buf.extend_from_slice(&chunk[..n]);
        };
        let head = String::from_utf8_lossy(&buf[..end]).to_string();
        assert!(
            head.starts_with("HTTP/1.1 101"),
            "{path}: not upgraded: {head}"
        );
        RawWs {
            stream,
            buf: buf[end + 4..].to_vec(),
        }
    }

    pub async fn send(&mut self, bytes: &[u8]) {
        // The server may already have failed the connection.
        let _ = self.stream.write_all(bytes).await;
    }

    /// The next frame from the server as (first byte, payload); `None` once
    /// the stream ends.
    pub async fn next_frame(&mut self, timeout: Duration) -> Option<(u8, Vec<u8>)> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if let Some((frame, used)) = parse_server_frame(&self.buf) {
                self.buf.drain(..used);
                return Some(frame);
            }
            let mut chunk = [0u8; 4096];
            let read = tokio::time::timeout_at(deadline, self.stream.read(&mut chunk))
                .await
                .unwrap_or_else(|_| panic!("no frame from the server within {timeout:?}"));
            match read {
                Ok(0) | Err(_) => return None,
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
            }
        }
    }

    /// Reads until the close frame; its code (`None`: none given), and the
    /// text frames that came before it.
    pub async fn close(&mut self, timeout: Duration) -> (Option<u16>, Vec<Value>) {
        let mut texts = Vec::new();
        loop {
            match self.next_frame(timeout).await {
                Some((first, payload)) if first & 0x0F == 0x8 => {
                    let code =
                        (payload.len() >= 2).then(|| u16::from_be_bytes([payload[0], payload[1]]));
                    if payload.len() > 2 {
                        std::str::from_utf8(&payload[2..]).expect("the close reason is UTF-8");
                    }
                    return (code, texts);
                }
                Some((first, payload)) if first & 0x0F == 0x1 => {
                    texts.push(serde_json::from_slice(&payload).expect("text frames are JSON"))
                }
                Some(_) => continue,
                None => panic!("the connection ended without a close frame; before it: {texts:?}"),
            }
        }
    }

    /// The next text frame as JSON, skipping control frames.
    pub async fn text(&mut self, timeout: Duration) -> Value {
        loop {
            match self.next_frame(timeout).await {
                Some((first, payload)) if first & 0x0F == 0x1 => {
                    return serde_json::from_slice(&payload).expect("JSON")
                }
                Some((first, payload)) if first & 0x0F == 0x8 => {
                    panic!("closed instead of a text: {payload:?}")
                }
                Some(_) => continue,
                None => panic!("the stream ended"),
            }
        }
    }
}

/// One server frame from the front of `buf`: it must be unmasked, with no
/// reserved bits. Returns the frame and the bytes it took.
fn parse_server_frame(buf: &[u8]) -> Option<((u8, Vec<u8>), usize)> {
    let [first, second, ..] = *buf else {
        return None;
    };
    assert_eq!(first & 0x70, 0, "the server set reserved bits");
    assert_eq!(second & 0x80, 0, "the server masked a frame");
    let (len, header) = match second & 0x7F {
        126 => (u16::from_be_bytes([*buf.get(2)?, *buf.get(3)?]) as usize, 4),
        127 => {
            let mut octets = [0u8; 8];
            octets.copy_from_slice(buf.get(2..10)?);
            (u64::from_be_bytes(octets) as usize, 10)
        }
        n => (n as usize, 2),
    };
    let payload = buf.get(header..header + len)?.to_vec();
    Some(((first, payload), header + len))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_malformed_frame_sequence_fails_the_connection_with_the_rfc_close_code() {
    let db = TestDb::new(Backend::Sqlite).await;
    let mut settings = test_settings(&db);
    settings.limits.max_message_size = 4096;
    let app = TestApp::spawn_with(settings).await;
    let path = format!("/ws?apikey={}", app.admin_key);
    let ping = br#"{"type":"ping"}"#;
    let mut long_length = vec![0x82, 0xFF];
    long_length.extend_from_slice(&(1u64 << 63).to_be_bytes());
    long_length.extend_from_slice(&[1, 2, 3, 4]);

    let cases: Vec<(&str, Vec<Vec<u8>>, u16)> = vec![
        ("reserved opcode 0x3", vec![frame(0x83, b"", true)], 1002),
        ("reserved opcode 0x7", vec![frame(0x87, b"x", true)], 1002),
        (
            "reserved control opcode 0xB",
            vec![frame(0x8B, b"", true)],
            1002,
        ),
        (
            "reserved control opcode 0xF",
            vec![frame(0x8F, b"", true)],
            1002,
        ),
        (
            "RSV1 without an extension",
            vec![frame(0xC1, ping, true)],
            1002,
        ),
        ("RSV2", vec![frame(0xA1, ping, true)], 1002),
        ("RSV3 on a ping", vec![frame(0x99, b"", true)], 1002),
        (
            "an unmasked text frame",
            vec![frame(0x81, ping, false)],
            1002,
        ),
        ("an unmasked ping", vec![frame(0x89, b"", false)], 1002),
        (
            "a fragmented ping",
            vec![frame(0x09, b"a", true), frame(0x80, b"b", true)],
            1002,
        ),
        (
            "a fragmented close",
            vec![frame(0x08, &close_payload(1000, b""), true)],
            1002,
        ),
        (
            "a ping of 126 bytes",
            vec![frame(0x89, &[b'p'; 126], true)],
            1002,
        ),
        (
            "a pong of 126 bytes",
            vec![frame(0x8A, &[b'p'; 126], true)],
            1002,
        ),
        (
            "a close of 126 bytes",
            vec![frame(0x88, &close_payload(1000, &[b'r'; 124]), true)],
            1002,
        ),
        (
            "a 64-bit length with its top bit set",
            vec![long_length],
            1002,
        ),
        (
            "a continuation with nothing to continue",
            vec![frame(0x80, ping, true)],
            1002,
        ),
        (
            "an unfinished continuation with nothing to continue",
            vec![frame(0x00, b"{", true)],
            1002,
        ),
        (
            "a new text message inside a fragmented one",
            vec![frame(0x01, b"{\"type\":", true), frame(0x81, ping, true)],
            1002,
        ),
        (
            "a binary frame inside a fragmented text",
            vec![frame(0x01, b"{\"type\":", true), frame(0x02, b"x", true)],
            1002,
        ),
        (
            "invalid UTF-8 in a text frame",
            vec![frame(0x81, b"{\"x\":\"\xff\"}", true)],
            1007,
        ),
        (
            "a surrogate encoded in UTF-8",
            vec![frame(0x81, b"\xed\xa0\x80", true)],
            1007,
        ),
        (
            "an overlong encoding",
            vec![frame(0x81, b"\xc0\xaf", true)],
            1007,
        ),
        (
            "invalid UTF-8 across fragments",
            vec![
                frame(0x01, b"{\"x\":\"\xe2\x82", true),
                frame(0x80, b"(\"}", true),
            ],
            1007,
        ),
        (
            "a text ending inside a character",
            vec![
                frame(0x01, b"{\"x\":\"", true),
                frame(0x80, b"\xe2\x82", true),
            ],
            1007,
        ),
        (
            "invalid UTF-8 in a close reason",
            vec![frame(0x88, &close_payload(1000, b"\xff\xfe"), true)],
            1007,
        ),
        (
            "a close payload of one byte",
            vec![frame(0x88, &[0x03], true)],
            1002,
        ),
        (
            "close code 0",
            vec![frame(0x88, &close_payload(0, b""), true)],
            1002,
        ),
        (
            "close code 999",
            vec![frame(0x88, &close_payload(999, b""), true)],
            1002,
        ),
        (
            "close code 1004 (reserved)",
            vec![frame(0x88, &close_payload(1004, b""), true)],
            1002,
        ),
        (
            "close code 1005 (never sent)",
            vec![frame(0x88, &close_payload(1005, b""), true)],
            1002,
        ),
        (
            "close code 1006 (never sent)",
            vec![frame(0x88, &close_payload(1006, b""), true)],
            1002,
        ),
        (
            "close code 1015 (never sent)",
            vec![frame(0x88, &close_payload(1015, b""), true)],
            1002,
        ),
        (
            "close code 1016 (unassigned)",
            vec![frame(0x88, &close_payload(1016, b""), true)],
            1002,
        ),
        (
            "close code 2999",
            vec![frame(0x88, &close_payload(2999, b""), true)],
            1002,
        ),
        (
            "close code 5000",
            vec![frame(0x88, &close_payload(5000, b""), true)],
            1002,
        ),
        (
            "a text frame over the size limit",
            vec![frame(0x81, &[b' '; 4097], true)],
            1009,
        ),
        (
            "a fragmented message over the size limit",
            vec![
                frame(0x01, &[b' '; 3000], true),
                frame(0x80, &[b' '; 3000], true),
            ],
            1009,
        ),
        (
            "a binary message",
            vec![frame(0x82, &[1, 2, 3], true)],
            1003,
        ),
    ];
    let mut wrong = Vec::new();
    for (name, frames, expected) in &cases {
        let mut ws = RawWs::connect(&app, &path).await;
        for bytes in frames {
            ws.send(bytes).await;
        }
        let (code, texts) = ws.close(WAIT).await;
        if code != Some(*expected) {
            wrong.push(format!("{name}: expected {expected}, got {code:?}"));
        }
        if *expected == 1003 {
            // The refusal is explained before the close.
            assert_eq!(
                texts.last().map(|t| t["data"]["code"].clone()),
                Some("BAD_REQUEST".into())
            );
        }
    }
    assert!(wrong.is_empty(), "wrong close codes:\n{}", wrong.join("\n"));

    // A 64-bit length over the limit is refused from its header alone: the
    // payload is never sent.
    let mut ws = RawWs::connect(&app, &path).await;
    let mut header = vec![0x82, 0xFF];
    header.extend_from_slice(&(1u64 << 40).to_be_bytes());
    header.extend_from_slice(&[1, 2, 3, 4]);
    ws.send(&header).await;
    assert_eq!(ws.close(WAIT).await.0, Some(1009));

    // The well-formed: a message in fragments with a character split between
    // them and a ping in between is answered, and the ping too.
    let mut ws = RawWs::connect(&app, &path).await;
    let message = "{\"type\":\"ping\",\"note\":\"€\"}".as_bytes();
    let cut = message
        .iter()
        .position(|b| *b == 0xE2)
        .expect("the euro sign")
        + 1;
    ws.send(&frame(0x01, &message[..cut], true)).await;
    ws.send(&frame(0x89, b"mid", true)).await;
    ws.send(&frame(0x00, &message[cut..cut + 1], true)).await;
    ws.send(&frame(0x80, &message[cut + 1..], true)).await;
    let mut pong_payload = None;
    let reply = loop {
        let (first, payload) = ws.next_frame(WAIT).await.expect("a frame");
        match first {
            0x8A => pong_payload = Some(payload),
            0x81 => break serde_json::from_slice::<Value>(&payload).expect("JSON"),
            other => panic!("unexpected frame {other:#x}"),
        }
    };
    assert_eq!(reply["type"], "pong", "{reply}");
    if pong_payload.is_none() {
        let (first, payload) = ws.next_frame(WAIT).await.expect("the pong");
        assert_eq!(first, 0x8A);
        pong_payload = Some(payload);
    }
    assert_eq!(
        pong_payload.as_deref(),
        Some(&b"mid"[..]),
        "the pong echoes the ping"
    );
    // The closing handshake echoes the client's code.
    ws.send(&frame(0x88, &close_payload(4000, "ça va".as_bytes()), true))
        .await;
    assert_eq!(ws.close(WAIT).await.0, Some(4000));
    let mut ws = RawWs::connect(&app, &path).await;
    ws.send(&frame(0x88, b"", true)).await;
    assert_eq!(ws.close(WAIT).await.0, Some(1000));

    // The server keeps serving.
    let mut ws = RawWs::connect(&app, &path).await;
    ws.send(&frame(0x81, ping, true)).await;
    assert_eq!(ws.text(WAIT).await["type"], "pong");
    app.stop().await;
}

/// Python's `websockets` (the asyncio implementation) and `websocket-client`:
/// each validates what the server sends by its own reading of RFC 6455.
const SECOND_OPINION: &str = r#"
import asyncio, json, sys
import websockets
import websocket

URL = sys.argv[1]

async def main():
    async with websockets.connect(URL) as ws:
        # A message sent in fragments.
        await ws.send(iter(['{"type":', '"ping",', '"note":"fragments"}']))
        print("fragmented:", json.loads(await ws.recv())["type"])
        # A ping with a payload, answered with the same payload.
        waiter = await ws.ping(b"are you there")
        latency = await asyncio.wait_for(waiter, 10)
        print("ping answered:", latency >= 0)
        # Binary is not understood: explained, then closed with 1003.
        await ws.send(b"\x01\x02\x03")
        print("binary:", json.loads(await ws.recv())["data"]["code"])
        try:
            await ws.recv()
        except websockets.ConnectionClosed as closed:
            print("binary close:", closed.rcvd.code)
    async with websockets.connect(URL) as ws:
        await ws.close(code=4000, reason="bye")
        print("close echoed:", ws.close_code)

asyncio.run(main())

# websocket-client sends a text frame that is not UTF-8.
ws = websocket.create_connection(URL)
ws.send(b"\xff\xfe", opcode=websocket.ABNF.OPCODE_TEXT)
opcode, data = ws.recv_data(control_frame=True)
print("invalid utf-8:", opcode == websocket.ABNF.OPCODE_CLOSE, int.from_bytes(data[:2], "big"))
ws.close()
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_websocket_libraries_agree_with_the_server_on_the_protocol() {
    let db = TestDb::new(Backend::Sqlite).await;
    let app = TestApp::spawn(&db).await;
    let url = app.ws_url(&format!("/ws?apikey={}", app.admin_key));
    let out = run_python(SECOND_OPINION, &[&url]).await;
    assert_eq!(
        out.lines().collect::<Vec<_>>(),
        [
            "fragmented: pong",
            "ping answered: True",
            "binary: BAD_REQUEST",
            "binary close: 1003",
            "close echoed: 4000",
            "invalid utf-8: True 1007",
        ],
        "{out}"
    );
    app.stop().await;
}
