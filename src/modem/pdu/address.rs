//! Address fields (TS 23.040 §9.1.2.5) and the SMSC information in front of
//! a TPDU (TS 24.011 RP address as used by TS 27.005 PDU mode).
//!
//! A phone number is written as swapped semi-octets (the first digit in the
//! low nibble), with an F filler nibble when the digit count is odd. An
//! alphanumeric sender is GSM-7 text packed into septets. The two encodings
//! differ in what the leading length octet counts: useful semi-octets for
//! TP addresses, octets (including the type octet) for the SMSC.

use super::error::PduError;
use super::gsm7;
use super::reader::Reader;

/// Type of address: international number, ISDN numbering plan.
pub const TOA_INTERNATIONAL: u8 = 0x91;
/// Type of address: unknown type of number, ISDN numbering plan.
pub const TOA_UNKNOWN: u8 = 0x81;
/// Type of address: alphanumeric (GSM-7), unknown numbering plan.
pub const TOA_ALPHANUMERIC: u8 = 0xD0;

/// Longest number an address field holds (10 octets of semi-octets).
const MAX_DIGITS: usize = 20;
/// Longest alphanumeric address: 10 octets hold 11 septets.
const MAX_ALPHANUMERIC_SEPTETS: usize = 11;

/// The digits of a semi-octet, indexed by nibble value (0xF is the filler).
const SEMI_OCTET_DIGITS: [char; 15] = [
    '0', '1', '2', '3', '4', '5', '6', '7', '8', '9', '*', '#', 'a', 'b', 'c',
];

/// A number ready to be written: type of address and one nibble per digit.
struct Number {
    toa: u8,
    nibbles: Vec<u8>,
}

/// Parses `+<digits>` (international) or `<digits>` (unknown type). Digits
/// are 0-9, `*` and `#`. Returns `Ok(None)` if the text is not a number at
/// all, so the caller can decide whether alphanumeric is acceptable.
fn parse_number(address: &str) -> Result<Option<Number>, PduError> {
    let (toa, digits) = match address.strip_prefix('+') {
        Some(rest) => (TOA_INTERNATIONAL, rest),
        None => (TOA_UNKNOWN, address),
    };
    let mut nibbles = Vec::with_capacity(digits.len());
    for c in digits.chars() {
        let nibble = match c {
            // to_digit(10) is 0..=9 for an ASCII digit.
            '0'..='9' => c.to_digit(10).map_or(0, |d| d as u8),
            '*' => 0x0A,
            '#' => 0x0B,
            _ => return Ok(None),
        };
        nibbles.push(nibble);
    }
    if nibbles.is_empty() {
        return if address.is_empty() || address == "+" {
            Err(PduError::EmptyAddress)
        } else {
            Ok(None)
        };
    }
    if nibbles.len() > MAX_DIGITS {
        return Err(PduError::InvalidAddress {
            address: address.to_string(),
            reason: "more than 20 digits",
        });
    }
    Ok(Some(Number { toa, nibbles }))
}

/// Writes nibbles as swapped semi-octets, padding an odd count with F.
fn push_semi_octets(nibbles: &[u8], out: &mut Vec<u8>) {
    for pair in nibbles.chunks(2) {
        let low = pair.first().copied().unwrap_or(0x0F);
        let high = pair.get(1).copied().unwrap_or(0x0F);
        out.push((high << 4) | low);
    }
}

/// Encodes a TP address (TP-DA, TP-OA, TP-RA): length in semi-octets, type,
/// value. Numbers are international when they start with `+`. When
/// `allow_alphanumeric` is set, anything that is not a number is sent as an
/// alphanumeric address of at most 11 GSM-7 septets (what a network does for
/// senders like "MyBank"); otherwise it is an error.
pub fn encode_address(
    address: &str,
    allow_alphanumeric: bool,
    out: &mut Vec<u8>,
) -> Result<(), PduError> {
    if let Some(number) = parse_number(address)? {
        // At most 20 digits, so the count fits in the octet.
        out.push(number.nibbles.len() as u8);
        out.push(number.toa);
        push_semi_octets(&number.nibbles, out);
        return Ok(());
    }
    if !allow_alphanumeric {
        return Err(PduError::InvalidAddress {
            address: address.to_string(),
            reason: "only digits, '*' and '#' are allowed, with an optional leading '+'",
        });
    }
    let septets = gsm7::string_to_septets(address).ok_or_else(|| PduError::InvalidAddress {
        address: address.to_string(),
        reason: "alphanumeric address has characters outside the GSM 7-bit alphabet",
    })?;
    if septets.len() > MAX_ALPHANUMERIC_SEPTETS {
        return Err(PduError::InvalidAddress {
            address: address.to_string(),
            reason: "alphanumeric address longer than 11 GSM-7 septets",
        });
    }
    let mut value = Vec::new();
    gsm7::pack_into(&septets, 0, &mut value);
    // Useful semi-octets: the nibbles the septets occupy (at most 20).
    out.push((septets.len() * 7).div_ceil(4) as u8);
    out.push(TOA_ALPHANUMERIC);
    out.extend_from_slice(&value);
    Ok(())
}

/// Encodes the SMSC information that precedes the TPDU: `None` writes the
/// single `00` octet that means "use the SMSC stored on the SIM".
pub fn encode_smsc(smsc: Option<&str>, out: &mut Vec<u8>) -> Result<(), PduError> {
    let Some(smsc) = smsc else {
        out.push(0);
        return Ok(());
    };
    let number = parse_number(smsc)?.ok_or_else(|| PduError::InvalidAddress {
        address: smsc.to_string(),
        reason: "SMSC must be digits with an optional leading '+'",
    })?;
    // Type octet plus ceil(digits / 2) octets; at most 11.
    out.push(1 + number.nibbles.len().div_ceil(2) as u8);
    out.push(number.toa);
    push_semi_octets(&number.nibbles, out);
    Ok(())
}

/// Renders semi-octet digits. A filler (F) nibble is skipped wherever it
/// appears rather than rejected, since some networks pad oddly.
fn digits_from_semi_octets(value: &[u8], max_digits: usize) -> String {
    value
        .iter()
        .flat_map(|&b| [b & 0x0F, b >> 4])
        .take(max_digits)
        .filter_map(|n| SEMI_OCTET_DIGITS.get(usize::from(n)).copied())
        .collect()
}

/// Prefixes `+` for an international type of number (TON = 001).
fn with_type_prefix(toa: u8, digits: String) -> String {
    if toa & 0x70 == 0x10 {
        format!("+{digits}")
    } else {
        digits
    }
}

/// Decodes a TP address. Returns "+digits" for international numbers,
/// plain digits for every other numeric type, and the text for alphanumeric
/// addresses (type of number 101).
pub fn decode_address(r: &mut Reader<'_>, field: &'static str) -> Result<String, PduError> {
    let semi_octets = usize::from(r.octet(field)?);
    let toa = r.octet(field)?;
    let value = r.take(semi_octets.div_ceil(2), field)?;
    if toa & 0x70 == 0x50 {
        // Alphanumeric: the semi-octet count covers the packed septets.
        let septets = semi_octets * 4 / 7;
        let unpacked = gsm7::unpack(value, 0, septets).unwrap_or_default();
        return Ok(gsm7::septets_to_string(&unpacked));
    }
    Ok(with_type_prefix(
        toa,
        digits_from_semi_octets(value, semi_octets),
    ))
}

/// Decodes the SMSC information at the start of a PDU. `None` when the
/// length octet is 0 (no SMSC given) or the field holds no digits.
pub fn decode_smsc(r: &mut Reader<'_>) -> Result<Option<String>, PduError> {
    let octets = usize::from(r.octet("SMSC length")?);
    if octets == 0 {
        return Ok(None);
    }
    let toa = r.octet("SMSC type of address")?;
    let value = r.take(octets - 1, "SMSC address")?;
    let digits = digits_from_semi_octets(value, usize::MAX);
    if digits.is_empty() {
        return Ok(None);
    }
    Ok(Some(with_type_prefix(toa, digits)))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // in tests a panic is the failure report
mod tests {
    use super::super::hex::encode_hex as hex;
    use super::*;

    fn enc(address: &str, alnum: bool) -> Result<String, PduError> {
        let mut out = Vec::new();
        encode_address(address, alnum, &mut out).map(|_| hex(&out))
    }

    fn dec(hex_text: &str) -> Result<String, PduError> {
        let bytes = super::super::hex::decode_hex(hex_text)?;
        let mut r = Reader::new(&bytes);
        let a = decode_address(&mut r, "address")?;
        r.finish()?;
        Ok(a)
    }

    #[test]
    fn international_odd_length_number() {
        // 11 digits, type 0x91, digits swapped pairwise: 15 55 12 34 56 7F
        // -> 51 55 21 43 65 F7 (the F filler sits in the high nibble).
        assert_eq!(enc("+15551234567", false).unwrap(), "0B915155214365F7");
        assert_eq!(dec("0B915155214365F7").unwrap(), "+15551234567");
    }

    #[test]
    fn national_even_length_number() {
        assert_eq!(enc("0612345678", false).unwrap(), "0A816021436587");
        assert_eq!(dec("0A816021436587").unwrap(), "0612345678");
        // '*' is nibble A, '#' is nibble B: (*,1)(0,0)(#,F) -> 1A 00 FB.
        assert_eq!(enc("*100#", false).unwrap(), "05811A00FB");
        assert_eq!(dec("05811A00FB").unwrap(), "*100#");
    }

    #[test]
    fn alphanumeric_sender() {
        // "Google": 6 septets = 42 bits = 11 semi-octets -> length 0x0B,
        // 6 octets. The packing of "Google" (C7F7FBCC2E03) is checked by
        // hand the same way as "hellohello" in gsm7.rs.
        assert_eq!(enc("Google", true).unwrap(), "0BD0C7F7FBCC2E03");
        assert_eq!(dec("0BD0C7F7FBCC2E03").unwrap(), "Google");
        assert!(matches!(
            enc("Google", false),
            Err(PduError::InvalidAddress { .. })
        ));
        assert!(enc("TwelveChars!", true).is_err());
        assert!(enc("Smiley😀", true).is_err());
        assert_eq!(dec(&enc("Eleven€Ch", true).unwrap()).unwrap(), "Eleven€Ch");
    }

    #[test]
    fn bad_numbers() {
        assert_eq!(enc("", false), Err(PduError::EmptyAddress));
        assert_eq!(enc("+", true), Err(PduError::EmptyAddress));
        assert!(enc("+1 555", false).is_err());
        assert!(enc("123456789012345678901", false).is_err());
        assert!(enc("12345678901234567890", false).is_ok());
    }

    #[test]
    fn smsc_field() {
        let mut out = Vec::new();
        encode_smsc(Some("+447785016005"), &mut out).unwrap();
        // 7 octets follow: type + 12 digits in 6 octets, pairwise swapped:
        // 44 77 85 01 60 05 -> 44 77 58 10 06 50.
        assert_eq!(hex(&out), "0791447758100650");
        let mut r = Reader::new(&out);
        assert_eq!(
            decode_smsc(&mut r).unwrap().as_deref(),
            Some("+447785016005")
        );
        let mut r = Reader::new(&[0x00]);
        assert_eq!(decode_smsc(&mut r).unwrap(), None);
        let mut r = Reader::new(&[0x08, 0x91, 0x44]);
        assert!(matches!(
            decode_smsc(&mut r),
            Err(PduError::Truncated { offset: 2, .. })
        ));
    }

    #[test]
    fn short_address_is_truncation_not_panic() {
        assert!(matches!(dec("0B9151"), Err(PduError::Truncated { .. })));
        assert!(matches!(dec("0B"), Err(PduError::Truncated { .. })));
        // An alphanumeric length larger than its bytes is caught too.
        assert!(matches!(dec("14D0C7"), Err(PduError::Truncated { .. })));
    }
}
