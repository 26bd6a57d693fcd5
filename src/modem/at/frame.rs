//! Byte framing of the AT stream: the only place that looks at raw bytes.
//!
//! A modem answers in lines ended by CR, LF or both, and asks for the body
//! of `AT+CMGS` with a bare `> ` prompt that has no line end. Everything
//! above this layer sees [`Frame`]s. Input is whatever the wire carried, so
//! nothing here trusts it: bytes that are not UTF-8 are replaced, control
//! characters are dropped, and a "line" that never ends is thrown away once
//! it is longer than any real response could be.

/// One unit of what the modem said.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    /// A non-empty line, trimmed, without control characters.
    Line(String),
    /// The `> ` prompt asking for a PDU.
    Prompt,
}

/// The longest line kept. A PDU line is at most 2 × 188 hex digits and a
/// `+CMGL` header a few dozen characters, so anything longer is noise.
pub const MAX_LINE: usize = 2048;

/// Splits the byte stream into frames; keeps a partial line between reads.
#[derive(Debug, Default)]
pub struct Framer {
    buf: Vec<u8>,
    /// Set after an endless line was dropped: the rest of it, up to the
    /// next line end, is dropped too (so how reads cut the stream does not
    /// change which lines come out).
    discarding: bool,
}

impl Framer {
    pub fn new() -> Framer {
        Framer::default()
    }

    /// Adds bytes just read from the modem.
    pub fn push(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// Whether a partial line is waiting for more bytes.
    pub fn has_partial(&self) -> bool {
        !self.buf.is_empty()
    }

    /// The next complete frame, if the buffer holds one.
    pub fn next_frame(&mut self) -> Option<Frame> {
        loop {
            if self.discarding {
                let end = self.buf.iter().position(|&b| b == b'\r' || b == b'\n');
                match end {
                    Some(end) => {
                        self.buf.drain(..end);
                        self.discarding = false;
                    }
                    None => {
                        self.buf.clear();
                        return None;
                    }
                }
            }
            let start = self
                .buf
                .iter()
                .position(|&b| !matches!(b, b'\r' | b'\n' | 0))
                .unwrap_or(self.buf.len());
            self.buf.drain(..start);
            let first = *self.buf.first()?;
            if first == b'>' {
                // "> " is the prompt; a lone ">" at the end of what has
                // arrived is one whose space has not come yet (or never will).
                match self.buf.get(1) {
                    Some(b' ') => {
                        self.buf.drain(..2);
                        return Some(Frame::Prompt);
                    }
                    None => {
                        self.buf.clear();
                        return Some(Frame::Prompt);
                    }
                    Some(_) => {}
                }
            }
            match self.buf.iter().position(|&b| b == b'\r' || b == b'\n') {
                Some(end) if end > MAX_LINE => {
                    tracing::debug!(bytes = end, "dropping an endless line");
                    self.buf.drain(..end);
                }
                Some(end) => {
                    let text = clean(&self.buf[..end]);
                    self.buf.drain(..end);
                    if text.is_empty() {
                        continue;
                    }
                    return Some(Frame::Line(text));
                }
                None => {
                    if self.buf.len() > MAX_LINE {
                        tracing::debug!(bytes = self.buf.len(), "dropping an endless line");
                        self.buf.clear();
                        self.discarding = true;
                    }
                    return None;
                }
            }
        }
    }
}

/// Text of a raw line (at most [`MAX_LINE`] bytes): lossy UTF-8, no
/// control characters, trimmed.
fn clean(bytes: &[u8]) -> String {
    let text: String = String::from_utf8_lossy(bytes)
        .chars()
        .filter(|c| !c.is_control())
        .collect();
    text.trim().to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frames(chunks: &[&[u8]]) -> Vec<Frame> {
        let mut framer = Framer::new();
        let mut out = Vec::new();
        for chunk in chunks {
            framer.push(chunk);
            while let Some(frame) = framer.next_frame() {
                out.push(frame);
            }
        }
        out
    }

    fn line(s: &str) -> Frame {
        Frame::Line(s.to_owned())
    }

    #[test]
    fn lines_end_with_cr_lf_or_both_and_empty_ones_vanish() {
        assert_eq!(
            frames(&[b"\r\nOK\r\n\r\n+CSQ: 20,99\rRING\nX\r\n"]),
            [line("OK"), line("+CSQ: 20,99"), line("RING"), line("X")]
        );
    }

    #[test]
    fn a_line_split_across_reads_is_joined() {
        assert_eq!(
            frames(&[b"\r\n+CM", b"TI: \"SM\"", b",3\r", b"\n"]),
            [line("+CMTI: \"SM\",3")]
        );
    }

    #[test]
    fn the_prompt_has_no_line_end() {
        assert_eq!(frames(&[b"\r\n> "]), [Frame::Prompt]);
        assert_eq!(frames(&[b"\r\n>"]), [Frame::Prompt]);
        assert_eq!(
            frames(&[b"\r\n> \r\n+CMGS: 4\r\n\r\nOK\r\n"]),
            [Frame::Prompt, line("+CMGS: 4"), line("OK")]
        );
    }

    #[test]
    fn garbage_is_cleaned_and_endless_lines_are_dropped() {
        assert_eq!(frames(&[b"\xff\x00\x07O\x1bK\r\n"]), [line("\u{FFFD}OK")]);
        let endless = vec![b'x'; MAX_LINE + 10];
        assert_eq!(frames(&[&endless, b"\r\nOK\r\n"]), [line("OK")]);
        // However the reads cut it.
        assert_eq!(
            frames(&[&endless[..MAX_LINE + 1], b"yyy\r\nOK\r\n"]),
            [line("OK")]
        );
        let mut joined = endless.clone();
        joined.extend_from_slice(b"\r\nOK\r\n");
        assert_eq!(frames(&[&joined]), [line("OK")]);
    }
}
