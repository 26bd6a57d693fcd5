//! User data header (TS 23.040 §9.2.3.24): the information elements in front
//! of the text when TP-UDHI is set. Only concatenation (IEI 0x00 with an
//! 8-bit reference, IEI 0x08 with a 16-bit reference) means anything to the
//! bridge; other elements are skipped.

use super::error::PduError;

/// IEI of the concatenation element with an 8-bit reference.
const IEI_CONCAT_8: u8 = 0x00;
/// IEI of the concatenation element with a 16-bit reference.
const IEI_CONCAT_16: u8 = 0x08;

/// Where one part sits in a concatenated message, so parts can be
/// collected and put back together in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Concat {
    /// Reference shared by all parts of one message (an 8-bit reference is
    /// widened to `u16`).
    pub reference: u16,
    /// Number of parts in the message, 1-255.
    pub total: u8,
    /// 1-based number of this part.
    pub sequence: u8,
}

/// Builds a complete header (UDHL included) holding one concatenation element.
pub fn concat_header(reference: u16, sixteen_bit: bool, total: u8, sequence: u8) -> Vec<u8> {
    if sixteen_bit {
        let [hi, lo] = reference.to_be_bytes();
        vec![6, IEI_CONCAT_16, 4, hi, lo, total, sequence]
    } else {
        // An 8-bit reference keeps only the low octet.
        let lo = reference.to_be_bytes()[1];
        vec![5, IEI_CONCAT_8, 3, lo, total, sequence]
    }
}

/// Octets of a header built by [`concat_header`].
pub fn concat_header_len(sixteen_bit: bool) -> usize {
    if sixteen_bit {
        7
    } else {
        6
    }
}

/// Parses the header at the start of `ud` (the user data octets, whose
/// first octet is at PDU offset `base`). Returns the header length in
/// octets, UDHL included, and the concatenation info if there is a valid one.
///
/// As §9.2.3.24.1 asks, a concatenation element whose total is 0 or whose
/// sequence number is 0 or above the total is ignored; when an element
/// appears more than once the last one wins.
pub fn parse(ud: &[u8], base: usize) -> Result<(usize, Option<Concat>), PduError> {
    let udhl = usize::from(*ud.first().ok_or(PduError::Truncated {
        offset: base,
        expected: "TP-UDHL (TP-UDHI is set)",
    })?);
    let header_len = 1 + udhl;
    let elements = ud
        .get(1..header_len)
        .ok_or_else(|| PduError::InvalidField {
            offset: base,
            field: "TP-UDHL",
            reason: format!(
                "header of {header_len} octets does not fit in {} octets of user data",
                ud.len()
            ),
        })?;
    let mut concat = None;
    let mut pos = 0;
    while pos < elements.len() {
        let (iei, len) = match (elements.get(pos), elements.get(pos + 1)) {
            (Some(&iei), Some(&len)) => (iei, usize::from(len)),
            _ => {
                return Err(PduError::InvalidField {
                    offset: base + 1 + pos,
                    field: "user data header",
                    reason: "information element header cut off".to_string(),
                })
            }
        };
        let data = elements
            .get(pos + 2..pos + 2 + len)
            .ok_or_else(|| PduError::InvalidField {
                offset: base + 1 + pos,
                field: "user data header",
                reason: format!(
                    "information element 0x{iei:02X} of {len} octets overruns the header"
                ),
            })?;
        let found = match (iei, data) {
            (IEI_CONCAT_8, &[reference, total, sequence]) => {
                Some((u16::from(reference), total, sequence))
            }
            (IEI_CONCAT_16, &[hi, lo, total, sequence]) => {
                Some((u16::from_be_bytes([hi, lo]), total, sequence))
            }
            _ => None,
        };
        if let Some((reference, total, sequence)) = found {
            concat = (total != 0 && sequence != 0 && sequence <= total).then_some(Concat {
                reference,
                total,
                sequence,
            });
        }
        pos += 2 + len;
    }
    Ok((header_len, concat))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // in tests a panic is the failure report
mod tests {
    use super::*;

    #[test]
    fn builds_both_reference_sizes() {
        assert_eq!(concat_header(0x1234, false, 3, 1), [5, 0, 3, 0x34, 3, 1]);
        assert_eq!(
            concat_header(0x1234, true, 3, 2),
            [6, 8, 4, 0x12, 0x34, 3, 2]
        );
        assert_eq!(
            concat_header(1, false, 2, 2).len(),
            concat_header_len(false)
        );
        assert_eq!(concat_header(1, true, 2, 2).len(), concat_header_len(true));
    }

    #[test]
    fn parses_what_it_builds() {
        for sixteen in [false, true] {
            let h = concat_header(0xAB, sixteen, 4, 3);
            let (len, c) = parse(&h, 0).unwrap();
            assert_eq!(len, h.len());
            assert_eq!(
                c,
                Some(Concat {
                    reference: 0xAB,
                    total: 4,
                    sequence: 3
                })
            );
        }
    }

    #[test]
    fn skips_other_elements_and_ignores_invalid_concat() {
        // Port addressing (IEI 05, 4 octets), then concat.
        let h = [11, 0x05, 4, 0x0B, 0x84, 0x23, 0xF0, 0x00, 3, 7, 2, 1];
        assert_eq!(
            parse(&h, 0).unwrap(),
            (
                12,
                Some(Concat {
                    reference: 7,
                    total: 2,
                    sequence: 1
                })
            )
        );
        // Sequence above total, total zero, sequence zero: all ignored.
        assert_eq!(parse(&[5, 0, 3, 7, 2, 3], 0).unwrap(), (6, None));
        assert_eq!(parse(&[5, 0, 3, 7, 0, 0], 0).unwrap(), (6, None));
        assert_eq!(parse(&[5, 0, 3, 7, 2, 0], 0).unwrap(), (6, None));
        // Wrong element length: not a concat element we understand.
        assert_eq!(parse(&[6, 0, 4, 7, 2, 1, 0], 0).unwrap(), (7, None));
        // Empty header is legal.
        assert_eq!(parse(&[0], 0).unwrap(), (1, None));
    }

    #[test]
    fn malformed_headers_are_errors() {
        assert!(matches!(
            parse(&[], 20),
            Err(PduError::Truncated { offset: 20, .. })
        ));
        // UDHL larger than the user data.
        assert!(parse(&[9, 0, 3, 1, 1, 1], 0).is_err());
        // Element overruns the header.
        assert!(parse(&[3, 0, 3, 1], 0).is_err());
        // Element header cut off.
        assert!(parse(&[1, 0], 0).is_err());
    }
}
