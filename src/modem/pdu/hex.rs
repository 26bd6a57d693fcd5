//! Hex text <-> octets, as PDUs travel over the AT command interface.

use super::error::PduError;

/// Parses hex text as a modem prints it: either case, surrounding whitespace
/// ignored. An odd number of digits or any non-hex character is an error.
pub fn decode_hex(text: &str) -> Result<Vec<u8>, PduError> {
    let text = text.trim();
    let mut out = Vec::with_capacity(text.len() / 2);
    let mut high: Option<u8> = None;
    let mut digits = 0usize;
    for (position, c) in text.chars().enumerate() {
        let nibble = match c.to_digit(16) {
            // to_digit(16) yields 0..=15, which always fits in a u8.
            Some(v) => v as u8,
            None => return Err(PduError::InvalidHexDigit { position, found: c }),
        };
        digits += 1;
        match high.take() {
            None => high = Some(nibble),
            Some(h) => out.push((h << 4) | nibble),
        }
    }
    if high.is_some() {
        return Err(PduError::OddHexLength { digits });
    }
    Ok(out)
}

/// Formats octets as uppercase hex, the form `AT+CMGS` expects.
pub fn encode_hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789ABCDEF";
    let mut s = String::with_capacity(bytes.len() * 2);
    for &b in bytes {
        // Each index is a nibble, 0..=15.
        s.push(char::from(DIGITS[usize::from(b >> 4)]));
        s.push(char::from(DIGITS[usize::from(b & 0x0F)]));
    }
    s
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // in tests a panic is the failure report
mod tests {
    use super::*;

    #[test]
    fn accepts_mixed_case_and_whitespace() {
        assert_eq!(decode_hex("  0aFf\r\n").unwrap(), vec![0x0A, 0xFF]);
        assert_eq!(decode_hex("").unwrap(), Vec::<u8>::new());
    }

    #[test]
    fn rejects_odd_length_and_junk() {
        assert_eq!(decode_hex("ABC"), Err(PduError::OddHexLength { digits: 3 }));
        assert_eq!(
            decode_hex("0G"),
            Err(PduError::InvalidHexDigit {
                position: 1,
                found: 'G'
            })
        );
        // Inner whitespace is not "surrounding" whitespace.
        assert!(decode_hex("00 11").is_err());
        // Non-ASCII must not be mistaken for digits.
        assert!(decode_hex("٣٣").is_err());
    }

    #[test]
    fn encodes_uppercase() {
        assert_eq!(encode_hex(&[0x00, 0xAB, 0x7f]), "00AB7F");
    }
}
