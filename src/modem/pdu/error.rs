//! The single error type of the PDU codec.
//!
//! Every decoder in this module works on bytes that come from a modem (and so
//! from the network), so every failure is reported as a value rather than a
//! panic. Octet offsets count from the first octet of the whole PDU, i.e. the
//! SMSC length octet is octet 0, which is what a person comparing the message
//! with a hex dump of the `+CMGR` line wants to see.

use std::fmt;

/// Why a PDU could not be decoded or a message could not be encoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PduError {
    /// The hex text has an odd number of digits, so it cannot be whole octets.
    OddHexLength {
        /// Number of hex digits after trimming surrounding whitespace.
        digits: usize,
    },
    /// The hex text contains something that is not a hex digit.
    InvalidHexDigit {
        /// Zero-based character index in the trimmed text.
        position: usize,
        /// The offending character.
        found: char,
    },
    /// The PDU ends before a field that must be there.
    Truncated {
        /// Octet at which the missing field should have started.
        offset: usize,
        /// Name of the field that was expected.
        expected: &'static str,
    },
    /// A field is present but its value cannot be interpreted.
    InvalidField {
        /// Octet at which the field starts.
        offset: usize,
        /// Name of the field.
        field: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// Octets remain after the last field that the header describes.
    TrailingData {
        /// Octet at which the unexplained data starts.
        offset: usize,
        /// How many octets are left over.
        count: usize,
    },
    /// TP-MTI names a message type that this decoder does not handle
    /// (e.g. an SMS-SUBMIT given to [`decode`](super::decode)).
    UnexpectedMessageType {
        /// The two TP-MTI bits.
        mti: u8,
        /// What the caller asked for.
        expected: &'static str,
    },
    /// An address to encode is empty (or only a `+`).
    EmptyAddress,
    /// An address to encode is not a valid phone number / alphanumeric sender.
    InvalidAddress {
        /// The address as given.
        address: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A field to encode is out of the range the PDU can carry.
    ValueOutOfRange {
        /// Name of the field.
        field: &'static str,
        /// What the allowed range is.
        reason: String,
    },
    /// The text needs more parts than the one-octet part counter allows.
    TooManyParts {
        /// Number of parts the text would need.
        needed: usize,
    },
}

impl fmt::Display for PduError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PduError::OddHexLength { digits } => {
                write!(f, "hex PDU has an odd number of digits ({digits})")
            }
            PduError::InvalidHexDigit { position, found } => {
                write!(f, "invalid hex digit {found:?} at position {position}")
            }
            PduError::Truncated { offset, expected } => {
                write!(f, "truncated at octet {offset}: expected {expected}")
            }
            PduError::InvalidField {
                offset,
                field,
                reason,
            } => write!(f, "invalid {field} at octet {offset}: {reason}"),
            PduError::TrailingData { offset, count } => write!(
                f,
                "{count} unexpected octet(s) after the end of the PDU at octet {offset}"
            ),
            PduError::UnexpectedMessageType { mti, expected } => {
                let name = match mti {
                    0 => "SMS-DELIVER",
                    1 => "SMS-SUBMIT",
                    2 => "SMS-STATUS-REPORT",
                    _ => "reserved type",
                };
                write!(f, "expected {expected}, found TP-MTI {mti} ({name})")
            }
            PduError::EmptyAddress => write!(f, "address is empty"),
            PduError::InvalidAddress { address, reason } => {
                write!(f, "invalid address {address:?}: {reason}")
            }
            PduError::ValueOutOfRange { field, reason } => {
                write!(f, "{field} out of range: {reason}")
            }
            PduError::TooManyParts { needed } => write!(
                f,
                "message needs {needed} parts, more than the 255 a concatenated SMS allows"
            ),
        }
    }
}

impl std::error::Error for PduError {}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // in tests a panic is the failure report
mod tests {
    use super::*;

    #[test]
    fn truncated_message_names_offset_and_field() {
        let e = PduError::Truncated {
            offset: 12,
            expected: "address",
        };
        assert_eq!(e.to_string(), "truncated at octet 12: expected address");
    }
}
