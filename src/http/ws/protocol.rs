//! RFC 6455 on the receiving side, without I/O: bytes from a client in,
//! whole messages and control frames out, or the violation that ends the
//! connection with the close code the RFC asks for.
//!
//! Frames are decoded by actix-http's codec. It checks reserved bits,
//! masking, opcodes, fragmented control frames, control frame lengths and
//! the order of continuation frames, but not everything RFC 6455 requires,
//! so [`Reader`] adds what it leaves out:
//!
//! - a frame header that announces a payload over the size limit (or a
//!   length with its top bit set) is refused as soon as the header is in,
//!   where the codec would first buffer the whole payload;
//! - every refusal gets its own close code: the codec reports an invalid
//!   close code and an invalid close reason as the same error, but one is a
//!   protocol error (1002) and the other invalid data (1007);
//! - text is checked to be UTF-8 (the codec does not look), fragment by
//!   fragment as it arrives, so an invalid message fails at its first bad
//!   byte and a character split between fragments is still accepted;
//! - fragments are put back together up to the size limit.
//!
//! Being free of I/O, the reader is what the fuzz target and the property
//! tests drive.

use actix_codec::Decoder;
use actix_http::ws::{CloseCode, CloseReason, Codec, Frame, Item, ProtocolError};
use bytes::{Bytes, BytesMut};
use bytestring::ByteString;
use serde::Deserialize;

/// Longest payload of a control frame (RFC 6455 §5.5).
const MAX_CONTROL_PAYLOAD: u64 = 125;

/// What a client sent: a whole message or a control frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Incoming {
    /// A text message, checked to be UTF-8.
    Text(ByteString),
    Binary(Bytes),
    Ping(Bytes),
    Pong(Bytes),
    /// The client's closing handshake, with its (valid) code and reason.
    Close(Option<CloseReason>),
}

/// Why the connection must be failed, and the close code that says so.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    pub code: CloseCode,
    pub reason: String,
}

impl Violation {
    fn protocol(reason: impl Into<String>) -> Violation {
        Violation {
            code: CloseCode::Protocol,
            reason: reason.into(),
        }
    }

    fn invalid_utf8(what: &str) -> Violation {
        Violation {
            code: CloseCode::Invalid,
            reason: format!("{what} is not valid UTF-8"),
        }
    }

    fn too_big(max_size: usize) -> Violation {
        Violation {
            code: CloseCode::Size,
            reason: format!("message larger than {max_size} bytes"),
        }
    }
}

/// A message arriving in fragments.
struct Partial {
    text: bool,
    bytes: BytesMut,
    /// How much of `bytes` is known to be whole, valid UTF-8 (text only): a
    /// character may be cut at the end of a fragment.
    checked: usize,
}

/// The receiving half of a server-side WebSocket.
pub struct Reader {
    codec: Codec,
    max_size: usize,
    partial: Option<Partial>,
}

impl Reader {
    /// A reader for client frames, refusing messages over `max_size` bytes.
    pub fn new(max_size: usize) -> Reader {
        Reader {
            codec: Codec::new().max_size(max_size),
            max_size,
            partial: None,
        }
    }

    /// Takes the next whole message or control frame from the front of
    /// `buf`; `Ok(None)` when more bytes are needed. After an `Err` the
    /// connection must be closed with the violation's code.
    pub fn next(&mut self, buf: &mut BytesMut) -> Result<Option<Incoming>, Violation> {
        loop {
            check_header(buf, self.max_size)?;
            let frame = match self.codec.decode(buf) {
                Ok(Some(frame)) => frame,
                Ok(None) => return Ok(None),
                Err(ProtocolError::Overflow) => return Err(Violation::too_big(self.max_size)),
                Err(err) => return Err(Violation::protocol(format!("protocol error: {err}"))),
            };
            let incoming = match frame {
                Frame::Text(bytes) => Some(Incoming::Text(text(bytes)?)),
                Frame::Binary(bytes) => Some(Incoming::Binary(bytes)),
                Frame::Continuation(item) => self.fragment(item)?,
                Frame::Ping(bytes) => Some(Incoming::Ping(bytes)),
                Frame::Pong(bytes) => Some(Incoming::Pong(bytes)),
                Frame::Close(reason) => Some(Incoming::Close(reason)),
            };
            if let Some(incoming) = incoming {
                return Ok(Some(incoming));
            }
        }
    }

    /// Adds a fragment; gives the message once its last fragment is in.
    fn fragment(&mut self, item: Item) -> Result<Option<Incoming>, Violation> {
        let (first, last, bytes) = match item {
            Item::FirstText(bytes) => (Some(true), false, bytes),
            Item::FirstBinary(bytes) => (Some(false), false, bytes),
            Item::Continue(bytes) => (None, false, bytes),
            Item::Last(bytes) => (None, true, bytes),
        };
        let mut partial = match (first, self.partial.take()) {
            (Some(text), None) => Partial {
                text,
                bytes: BytesMut::new(),
                checked: 0,
            },
            (None, Some(partial)) => partial,
            // The codec tracks the order too; this keeps the reader right
            // on its own.
            (Some(_), Some(_)) => {
                return Err(Violation::protocol(
                    "a new message began inside a fragmented one",
                ))
            }
            (None, None) => {
                return Err(Violation::protocol(
                    "a continuation frame without a message to continue",
                ))
            }
        };
        if partial.bytes.len() + bytes.len() > self.max_size {
            return Err(Violation::too_big(self.max_size));
        }
        partial.bytes.extend_from_slice(&bytes);
        if partial.text {
            // Fail fast: only a character cut at the very end may wait for
            // the next fragment.
            match std::str::from_utf8(&partial.bytes[partial.checked..]) {
                Ok(_) => partial.checked = partial.bytes.len(),
                Err(err) if err.error_len().is_some() || last => {
                    return Err(Violation::invalid_utf8("a text message"))
                }
                Err(err) => partial.checked += err.valid_up_to(),
            }
        }
        if !last {
            self.partial = Some(partial);
            return Ok(None);
        }
        let bytes = partial.bytes.freeze();
        Ok(Some(if partial.text {
            Incoming::Text(text(bytes)?)
        } else {
            Incoming::Binary(bytes)
        }))
    }
}

fn text(bytes: Bytes) -> Result<ByteString, Violation> {
    ByteString::try_from(bytes).map_err(|_| Violation::invalid_utf8("a text message"))
}

/// Looks at the header of the frame at the front of `buf` (and, for a
/// close frame that is all in, its payload) for what the codec would miss
/// or report late.
fn check_header(buf: &[u8], max_size: usize) -> Result<(), Violation> {
    let [first, second, ..] = *buf else {
        return Ok(());
    };
    let fin = first & 0x80 != 0;
    let opcode = first & 0x0F;
    if first & 0x70 != 0 {
        return Err(Violation::protocol(
            "reserved bits set, but no extension was negotiated",
        ));
    }
    if !matches!(opcode, 0x0..=0x2 | 0x8..=0xA) {
        return Err(Violation::protocol(format!("unknown opcode {opcode:#x}")));
    }
    if second & 0x80 == 0 {
        return Err(Violation::protocol("client frames must be masked"));
    }
    let control = opcode >= 0x8;
    if control && !fin {
        return Err(Violation::protocol("control frames must not be fragmented"));
    }
    let (length, header) = match second & 0x7F {
        126 => match buf.get(2..4) {
            Some(b) => (u64::from(u16::from_be_bytes([b[0], b[1]])), 8),
            None => return Ok(()),
        },
        127 => match buf.get(2..10) {
            Some(b) => {
                let mut octets = [0u8; 8];
                octets.copy_from_slice(b);
                (u64::from_be_bytes(octets), 14)
            }
            None => return Ok(()),
        },
        short => (u64::from(short), 6),
    };
    if control && length > MAX_CONTROL_PAYLOAD {
        return Err(Violation::protocol(format!(
            "control frame of {length} bytes; at most {MAX_CONTROL_PAYLOAD} are allowed"
        )));
    }
    if length >> 63 != 0 {
        return Err(Violation::protocol(
            "payload length with the most significant bit set",
        ));
    }
    if length > max_size as u64 {
        return Err(Violation::too_big(max_size));
    }
    if opcode == 0x8 {
        // A close frame's length is at most 125 here, checked above.
        let end = header + length as usize;
        if let Some(frame) = buf.get(..end) {
            let mask = [
                frame[header - 4],
                frame[header - 3],
                frame[header - 2],
                frame[header - 1],
            ];
            let payload: Vec<u8> = frame[header..]
                .iter()
                .enumerate()
                .map(|(i, b)| b ^ mask[i % 4])
                .collect();
            check_close_payload(&payload)?;
        }
    }
    Ok(())
}

/// A close frame's payload: empty, or a code a peer may send followed by a
/// UTF-8 reason (RFC 6455 §5.5.1, §7.4).
fn check_close_payload(payload: &[u8]) -> Result<(), Violation> {
    match payload {
        [] => Ok(()),
        [_] => Err(Violation::protocol("a close payload of one byte")),
        [high, low, reason @ ..] => {
            let code = u16::from_be_bytes([*high, *low]);
            // 1004-1006 and 1015 are reserved, never sent; 1000-2999
            // otherwise belong to the RFC and its registry, 3000-4999 to
            // applications.
            if !matches!(code, 1000..=1003 | 1007..=1014 | 3000..=4999) {
                return Err(Violation::protocol(format!("invalid close code {code}")));
            }
            if std::str::from_utf8(reason).is_err() {
                return Err(Violation::invalid_utf8("the close reason"));
            }
            Ok(())
        }
    }
}

/// A message from the client, in any of the shapes the seeds send.
#[derive(Debug, Default, Deserialize)]
pub struct ClientMessage {
    /// `subscribe`, `unsubscribe`, `refresh`.
    pub action: Option<String>,
    /// `ping` (ours and seed 003's heartbeat).
    #[serde(rename = "type")]
    pub kind: Option<String>,
    pub instances: Option<Vec<String>>,
    pub events: Option<Vec<String>>,
    /// Seed 004's subscribe names one resource: here, an instance.
    pub resource: Option<String>,
    pub token: Option<String>,
}

/// Parses a client's text message.
pub fn parse_client_message(text: &str) -> Result<ClientMessage, String> {
    serde_json::from_str(text).map_err(|err| format!("not valid JSON: {err}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A masked client frame.
    fn frame(first: u8, payload: &[u8]) -> Vec<u8> {
        let mask = [0x12, 0x34, 0x56, 0x78];
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

    fn read_all(bytes: &[u8]) -> Result<Vec<Incoming>, Violation> {
        let mut reader = Reader::new(1024);
        let mut buf = BytesMut::from(bytes);
        let mut out = Vec::new();
        while let Some(incoming) = reader.next(&mut buf)? {
            out.push(incoming);
        }
        Ok(out)
    }

    fn code(bytes: &[u8]) -> CloseCode {
        read_all(bytes).expect_err("must be refused").code
    }

    #[test]
    fn a_character_split_between_fragments_is_accepted() {
        let euro = "€".as_bytes();
        let mut bytes = frame(0x01, &euro[..1]);
        bytes.extend(frame(0x89, b"")); // a ping in between is allowed
        bytes.extend(frame(0x00, &euro[1..2]));
        bytes.extend(frame(0x80, &euro[2..]));
        assert_eq!(
            read_all(&bytes).expect("valid"),
            vec![
                Incoming::Ping(Bytes::new()),
                Incoming::Text(ByteString::from("€"))
            ]
        );
    }

    #[test]
    fn each_violation_gets_its_close_code() {
        assert_eq!(code(&frame(0x83, b"")), CloseCode::Protocol);
        assert_eq!(code(&frame(0xC1, b"x")), CloseCode::Protocol);
        assert_eq!(code(&frame(0x09, b"")), CloseCode::Protocol);
        assert_eq!(code(&frame(0x89, &[0u8; 126])), CloseCode::Protocol);
        assert_eq!(code(&frame(0x80, b"x")), CloseCode::Protocol);
        let mut nested = frame(0x01, b"a");
        nested.extend(frame(0x81, b"b"));
        assert_eq!(code(&nested), CloseCode::Protocol);
        assert_eq!(code(&frame(0x81, &[0xFF])), CloseCode::Invalid);
        // Fails at the first fragment already: 0xC3 0x28 can never be UTF-8.
        assert_eq!(code(&frame(0x01, &[0xC3, 0x28])), CloseCode::Invalid);
        assert_eq!(code(&frame(0x88, &[0x03, 0xE8, 0xFF])), CloseCode::Invalid);
        assert_eq!(code(&frame(0x88, &[0x03, 0xED])), CloseCode::Protocol);
        assert_eq!(code(&frame(0x88, &[0x03])), CloseCode::Protocol);
        assert_eq!(code(&frame(0x81, &[b'x'; 1025])), CloseCode::Size);
        // Unmasked.
        assert_eq!(code(&[0x81, 0x01, b'x']), CloseCode::Protocol);
    }

    #[test]
    fn an_oversized_header_is_refused_before_its_payload_arrives() {
        let mut reader = Reader::new(1024);
        let mut buf = BytesMut::from(&[0x82, 0xFF, 0, 0, 0, 0, 0x10, 0, 0, 0][..]);
        assert_eq!(
            reader.next(&mut buf).expect_err("too big").code,
            CloseCode::Size
        );
        let mut buf = BytesMut::from(&[0x82, 0xFF, 0x80, 0, 0, 0, 0, 0, 0, 0][..]);
        assert_eq!(
            Reader::new(1024)
                .next(&mut buf)
                .expect_err("bad length")
                .code,
            CloseCode::Protocol
        );
    }
}
