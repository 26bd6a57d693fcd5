//! A bounds-checked cursor over PDU octets.
//!
//! All decoders read through this type so that a short or lying PDU turns
//! into [`PduError::Truncated`] with the octet offset, never an index panic.

use super::error::PduError;

/// Cursor over a PDU; `pos` is the offset of the next unread octet.
pub struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    /// Starts reading at octet 0.
    pub fn new(buf: &'a [u8]) -> Self {
        Reader { buf, pos: 0 }
    }

    /// Offset of the next octet to be read.
    pub fn offset(&self) -> usize {
        self.pos
    }

    /// Number of octets not yet read.
    pub fn remaining(&self) -> usize {
        self.buf.len().saturating_sub(self.pos)
    }

    /// Reads one octet, naming `expected` in the error if there is none.
    pub fn octet(&mut self, expected: &'static str) -> Result<u8, PduError> {
        match self.buf.get(self.pos) {
            Some(&b) => {
                self.pos += 1;
                Ok(b)
            }
            None => Err(self.truncated(expected)),
        }
    }

    /// Reads `n` octets, naming `expected` in the error if they are not all there.
    pub fn take(&mut self, n: usize, expected: &'static str) -> Result<&'a [u8], PduError> {
        let end = self
            .pos
            .checked_add(n)
            .ok_or_else(|| self.truncated(expected))?;
        match self.buf.get(self.pos..end) {
            Some(slice) => {
                self.pos = end;
                Ok(slice)
            }
            None => Err(self.truncated(expected)),
        }
    }

    /// Everything not read yet; the cursor moves to the end.
    pub fn rest(&mut self) -> &'a [u8] {
        let slice = self.buf.get(self.pos..).unwrap_or(&[]);
        self.pos = self.buf.len();
        slice
    }

    /// Errors if octets are left over, so a PDU longer than its fields say is
    /// reported rather than silently accepted.
    pub fn finish(&self) -> Result<(), PduError> {
        match self.remaining() {
            0 => Ok(()),
            count => Err(PduError::TrailingData {
                offset: self.pos,
                count,
            }),
        }
    }

    /// The error for a field that should start at the current offset but is missing.
    pub fn truncated(&self, expected: &'static str) -> PduError {
        PduError::Truncated {
            offset: self.pos,
            expected,
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // in tests a panic is the failure report
mod tests {
    use super::*;

    #[test]
    fn reads_and_reports_offsets() {
        let mut r = Reader::new(&[1, 2, 3]);
        assert_eq!(r.octet("a").unwrap(), 1);
        assert_eq!(r.take(2, "b").unwrap(), &[2, 3]);
        assert_eq!(
            r.octet("c"),
            Err(PduError::Truncated {
                offset: 3,
                expected: "c"
            })
        );
        assert!(r.finish().is_ok());
    }

    #[test]
    fn take_past_end_does_not_move() {
        let mut r = Reader::new(&[1, 2]);
        assert!(r.take(3, "x").is_err());
        assert!(r.take(usize::MAX, "x").is_err());
        assert_eq!(r.offset(), 0);
        assert_eq!(r.remaining(), 2);
        assert_eq!(
            r.finish(),
            Err(PduError::TrailingData {
                offset: 0,
                count: 2
            })
        );
    }
}
