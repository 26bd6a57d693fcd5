//! Fuzz target: whatever bytes a WebSocket client sends, the server's frame
//! reader returns messages or a violation with a close code, never panics,
//! never hands out more than the size limit or text that is not UTF-8, and
//! gives the same answer however the stream is cut into reads. Every text
//! message then goes through the client-message parser.
//!
//! The first input octet picks how the bytes are split into reads, the
//! second the size limit; the rest is the stream.
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use switchboard::http::ws::protocol::{parse_client_message, Incoming, Reader, Violation};

/// Everything the reader makes of `chunks`, up to and with its first violation.
fn read(chunks: impl Iterator<Item = Vec<u8>>, max_size: usize) -> Vec<Result<Incoming, Violation>> {
    let mut reader = Reader::new(max_size);
    let mut buf = BytesMut::new();
    let mut out = Vec::new();
    for chunk in chunks {
        buf.extend_from_slice(&chunk);
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

fuzz_target!(|data: &[u8]| {
    let [split, size, stream @ ..] = data else {
        return;
    };
    let step = usize::from(*split % 31) + 1;
    let max_size = 16 + usize::from(*size) * 64;
    let whole = read(std::iter::once(stream.to_vec()), max_size);
    let pieces = read(stream.chunks(step).map(<[u8]>::to_vec), max_size);
    assert_eq!(whole, pieces, "the answer depends on how the stream was cut");
    for item in &whole {
        match item {
            Ok(Incoming::Text(text)) => {
                assert!(text.len() <= max_size);
                let _ = parse_client_message(text);
            }
            Ok(Incoming::Binary(bytes)) => assert!(bytes.len() <= max_size),
            Ok(Incoming::Ping(bytes) | Incoming::Pong(bytes)) => assert!(bytes.len() <= 125),
            Ok(Incoming::Close(reason)) => {
                if let Some(reason) = reason {
                    let code = u16::from(reason.code);
                    assert!(matches!(code, 1000..=1003 | 1007..=1014 | 3000..=4999), "{code}");
                }
            }
            Err(violation) => {
                let code = u16::from(violation.code);
                assert!(matches!(code, 1002 | 1007 | 1009), "{code}");
            }
        }
    }
    let _ = parse_client_message(&String::from_utf8_lossy(stream));
});
