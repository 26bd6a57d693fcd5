//! Property tests of the WebSocket frame reader (`http::ws::protocol`), the
//! part of the server that reads what clients send:
//!
//! - any messages, cut into any fragments with pings between them and the
//!   stream cut into any reads, come out whole and in order;
//! - any byte stream (and any damage to a valid one) gives messages or one
//!   violation with an RFC 6455 close code, never a panic, and the same
//!   answer however the stream is cut into reads.
//!
//! The fuzz target `fuzz/fuzz_targets/ws_frames.rs` checks the second
//! property with coverage guidance; this runs in every test run.

use bytes::{Bytes, BytesMut};
use bytestring::ByteString;
use proptest::prelude::*;
use switchboard::http::ws::protocol::{parse_client_message, Incoming, Reader, Violation};

const MAX_SIZE: usize = 4096;

/// A masked client frame.
fn frame(first: u8, payload: &[u8], mask: [u8; 4]) -> Vec<u8> {
    let mut out = vec![first];
    match payload.len() {
        n if n < 126 => out.push(0x80 | n as u8),
        n if n <= 0xFFFF => {
            out.push(0x80 | 126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(0x80 | 127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    out.extend_from_slice(&mask);
    out.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    out
}

/// A message and how to send it: its fragments' sizes and a ping after
/// some of them.
#[derive(Debug, Clone)]
struct Sent {
    text: Option<String>,
    binary: Vec<u8>,
    cuts: Vec<usize>,
    pings: Vec<bool>,
}

fn sent() -> impl Strategy<Value = Sent> {
    (
        prop_oneof!["[a-z€😀ü {}\":,]{0,300}".prop_map(Some), Just(None),],
        proptest::collection::vec(any::<u8>(), 0..300),
        proptest::collection::vec(0usize..64, 0..6),
        proptest::collection::vec(any::<bool>(), 0..6),
    )
        .prop_map(|(text, binary, cuts, pings)| Sent {
            text,
            binary,
            cuts,
            pings,
        })
}

/// The frames of one message, and what the reader should give for them.
fn encode(sent: &Sent, mask: [u8; 4]) -> (Vec<u8>, Vec<Incoming>) {
    let (opcode, payload) = match &sent.text {
        Some(text) => (0x1, text.as_bytes().to_vec()),
        None => (0x2, sent.binary.clone()),
    };
    // Fragment boundaries anywhere, even inside a character.
    let mut pieces = Vec::new();
    let mut rest = &payload[..];
    for cut in &sent.cuts {
        let cut = (*cut).min(rest.len());
        pieces.push(&rest[..cut]);
        rest = &rest[cut..];
    }
    pieces.push(rest);
    let mut bytes = Vec::new();
    let mut expected = Vec::new();
    let last = pieces.len() - 1;
    for (i, piece) in pieces.iter().enumerate() {
        let op = if i == 0 { opcode } else { 0x0 };
        let fin = if i == last { 0x80 } else { 0 };
        bytes.extend(frame(fin | op, piece, mask));
        if i < last && sent.pings.get(i).copied().unwrap_or(false) {
            bytes.extend(frame(0x89, &[i as u8], mask));
            expected.push(Incoming::Ping(Bytes::from(vec![i as u8])));
        }
    }
    expected.push(match &sent.text {
        Some(text) => Incoming::Text(ByteString::from(text.as_str())),
        None => Incoming::Binary(Bytes::from(payload)),
    });
    (bytes, expected)
}

fn read(stream: &[u8], step: usize) -> Vec<Result<Incoming, Violation>> {
    let mut reader = Reader::new(MAX_SIZE);
    let mut buf = BytesMut::new();
    let mut out = Vec::new();
    for chunk in stream.chunks(step.max(1)) {
        buf.extend_from_slice(chunk);
        loop {
            match reader.next(&mut buf) {
                Ok(Some(incoming)) => out.push(Ok(incoming)),
                Ok(None) => break,
                Err(violation) => {
                    out.push(Err(violation));
                    return out;
                }
            }
        }
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn fragmented_messages_come_out_whole_and_in_order(
        messages in proptest::collection::vec(sent(), 1..6),
        mask in any::<[u8; 4]>(),
        step in 1usize..200,
    ) {
        let mut stream = Vec::new();
        let mut expected = Vec::new();
        for message in &messages {
            let (bytes, incoming) = encode(message, mask);
            stream.extend(bytes);
            expected.extend(incoming.into_iter().map(Ok));
        }
        prop_assert_eq!(read(&stream, step), expected);
    }

    #[test]
    fn damaged_streams_fail_cleanly_the_same_way_however_they_are_cut(
        messages in proptest::collection::vec(sent(), 1..4),
        damage in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..4),
        step in 1usize..64,
    ) {
        let mut stream: Vec<u8> = messages.iter().flat_map(|m| encode(m, [1, 2, 3, 4]).0).collect();
        for (at, byte) in &damage {
            let i = at.index(stream.len());
            stream[i] ^= byte | 1;
        }
        let whole = read(&stream, stream.len());
        prop_assert_eq!(&read(&stream, step), &whole);
        for item in &whole {
            match item {
                Ok(Incoming::Text(text)) => {
                    prop_assert!(text.len() <= MAX_SIZE);
                    let _ = parse_client_message(text);
                }
                Ok(Incoming::Binary(bytes)) => prop_assert!(bytes.len() <= MAX_SIZE),
                Ok(Incoming::Ping(bytes) | Incoming::Pong(bytes)) => prop_assert!(bytes.len() <= 125),
                Ok(Incoming::Close(_)) => {}
                Err(violation) => {
                    let code = u16::from(violation.code);
                    prop_assert!(matches!(code, 1002 | 1007 | 1009), "close code {}", code);
                }
            }
        }
    }

    #[test]
    fn any_bytes_give_messages_or_one_violation(
        stream in proptest::collection::vec(any::<u8>(), 0..2048),
        step in 1usize..64,
    ) {
        prop_assert_eq!(read(&stream, step), read(&stream, stream.len().max(1)));
        let _ = parse_client_message(&String::from_utf8_lossy(&stream));
    }
}
